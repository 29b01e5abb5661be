"""Chat about a video clip: a conversation whose messages the video agent answers on one thread.

Routes (with ``--video`` and an LLM; the conversations are kept in memory and, when the server has a state
file, in it too, so they survive a restart: :mod:`serving.chat.clips`):

* ``POST /v1/chat/clips``: multipart, the file part ``video`` and optional parameters (``max_frames``, as a
  JSON part ``params`` or a plain part). The clip is checked and sampled once (same bounds and statuses as
  ``/v1/video/agent``: 422 ``max_frames`` over the cap, 413 too long or too large); 201 with the
  conversation id and ``clip`` (frames, stride, ``frame_indices``).
* ``POST /v1/chat/clips/{id}/messages``: ``{"message", "stream"}`` as for image conversations. The message
  is sent with a summary of the earlier turns, on the conversation's agent thread: the masklets found so far
  keep their ids and are shown to the model, so "now only the one on the left" can pick among them. Events as
  ``/v1/video/agent`` (``progress``, ``tool_call``, ``tool_result``, ``retry``, then ``answer`` or ``error``);
  the answer also has ``turn_index`` and ``overlay_png`` (four keyframes with the chosen masklets drawn).
  409 while the conversation answers another message; 410 ``clip_gone`` when the stored clip's folder was removed.
* ``GET /v1/chat/clips/{id}``: the clip and the transcript. ``DELETE /v1/chat/clips/{id}``: delete it, its
  clip and its agent thread (204).
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field

from serving.chat.clips import ClipChats, ClipConversation
from serving.chat.routes import compose_query
from serving.http.agent import SSE_HEADERS, event_stream
from serving.http.common import runtime, until_disconnected, with_timeout
from serving.http.errors import ApiError
from serving.http.schemas import ChatMessage, ErrorResponse, StrictModel
from serving.http.stream import EventSink
from serving.http.video import _store, _upload_body, receive_video_form
from serving.http.video_agent import MAX_FRAMES_DOC, VideoAgentJob, plan_clip, video_agent_settings
from serving.http.video_agent_schemas import VIDEO_AGENT_200
from serving.http.video_sessions import remove_folder

router = APIRouter(prefix="/v1/chat/clips", tags=["chat"])
ClipConversationId = Annotated[str, Path(description="a clip conversation's id (from POST /v1/chat/clips)",
                                         examples=["clip-0c6f1b8e2d7a4f3c9e5b1a2d3c4e5f60"])]


_TEXT = {400: "unreadable video", 404: "unknown or expired clip conversation",
         409: "the conversation is answering another message",
         410: "the conversation's clip was removed from the server (its transcript is still readable)",
         413: "clip over the size, pixel or duration limit, or alone over the stored conversations' size limit",
         415: "not multipart", 422: "the body does not match the schema, or max_frames is over the server's cap",
         429: "every kept clip conversation is busy", 503: "video or the LLM is not available",
         504: "ran past the video timeout"}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse, "description": _TEXT[code]} for code in codes}


class ClipChatParams(StrictModel):
    """``POST /v1/chat/clips`` parameters (the ``params`` part, optional)."""

    max_frames: int | None = Field(None, ge=1, description=MAX_FRAMES_DOC)


def clip_chats(request: Request) -> ClipChats:
    """The app's clip conversations; 503 without video or without an LLM."""
    rt = runtime(request)
    rt.require_video()
    if rt.settings.llm is None:
        raise ApiError(503, "no LLM is configured on this server (start it with --llm-url)", "not_ready")
    return request.app.state.clip_chats


@router.post("", status_code=201, responses=_errors(400, 413, 415, 422, 429, 503),
             openapi_extra=_upload_body(ClipChatParams), summary="Start a conversation about a video clip")
async def create_clip_conversation(request: Request) -> JSONResponse:
    """Upload a clip (checked and sampled to ``max_frames`` once) to ask the video agent about it, with follow-ups."""
    chats, store = clip_chats(request), _store(request)
    folder, path, params = await receive_video_form(request, store, ClipChatParams, "clip")
    try:
        plan = await plan_clip(runtime(request), path, folder, params.max_frames)
        conversation = await chats.add(path.name, folder, plan)
    except BaseException:
        remove_folder(folder)
        raise
    return JSONResponse({"conversation_id": conversation.id, "clip": plan.to_json()}, status_code=201)


@router.get("/{conversation_id}", responses=_errors(404, 429, 503), summary="A clip conversation's transcript")
async def get_clip_conversation(conversation_id: ClipConversationId, request: Request) -> JSONResponse:
    return JSONResponse((await clip_chats(request).find(conversation_id)).describe())


@router.delete("/{conversation_id}", status_code=204, response_class=Response, responses=_errors(404, 503),
               summary="Delete a clip conversation")
async def delete_clip_conversation(conversation_id: ClipConversationId, request: Request) -> Response:
    """Delete the clip, its transcript and its agent thread."""
    if not await clip_chats(request).forget(conversation_id):
        raise ApiError(404, f"no clip conversation {conversation_id!r} on this server", "unknown_conversation")
    return Response(status_code=204)


async def _answer(request: Request, conversation: ClipConversation, message: str,
                  sink: EventSink | None) -> dict[str, Any]:
    """One message on the conversation's thread; the answer document with ``query`` and ``turn_index``."""
    rt, chats = runtime(request), request.app.state.clip_chats
    store = conversation.next_store()
    conversation.store = store  # a failed message may still have added masklets to the thread
    query = compose_query(message, conversation.turns, rt.settings.chat_history_turns, medium="clip")
    job = VideoAgentJob(rt, conversation.plan, query, video_agent_settings(), overlay=True, graph=chats.graph,
                        thread_id=conversation.id, store=store, title=message)
    try:
        answer = await with_timeout(job.run(sink), rt.settings.video_timeout_s, "the video agent query")
    except BaseException:
        with contextlib.suppress(Exception):  # the failure is what the client must hear about
            await chats.save_tracks(conversation)
        raise
    answer["query"] = message
    await chats.record(conversation, message, answer)
    return answer


@router.post("/{conversation_id}/messages",
             responses={**_errors(404, 409, 410, 422, 429, 503, 504), **VIDEO_AGENT_200},
             summary="Ask about the clip, or follow up on the last answer")
async def send_clip_message(conversation_id: ClipConversationId, body: ChatMessage, request: Request) -> Any:
    """Answer the message with the video agent on the conversation's thread; ``stream`` as in ``/v1/video/agent``."""
    conversation = await clip_chats(request).find(conversation_id)
    conversation.require_clip()
    if conversation.lock.locked():
        raise ApiError(409, "this conversation is answering another message; wait for its answer",
                       "conversation_busy")

    async def run(sink: EventSink | None = None) -> dict[str, Any]:
        async with conversation.lock:
            return await _answer(request, conversation, body.message, sink)

    if body.stream:
        return StreamingResponse(event_stream(run), media_type="text/event-stream", headers=SSE_HEADERS)
    return JSONResponse(await until_disconnected(request, run()))
