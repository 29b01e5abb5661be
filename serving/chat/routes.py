"""Chat-style segmentation over one image, and the page that uses it (``GET /chat``).

A conversation is one image and a sequence of messages. Every message is one agent query on the
LangGraph thread named by the conversation id, so the masks found earlier keep their ids and are shown
to the model again; the message is sent with a short summary of the earlier turns (what was asked and
which masks answered it), so that "only the left one" or "also the dog" can refer to the last answer.
The thread lives in the graph's checkpointer and the image and transcript in :class:`ChatStore`; with
``--state-db`` both are in one SQLite file and a restarted server continues every conversation.

Routes: ``POST /v1/chat`` (new conversation from an image), ``GET /v1/chat/{id}`` (transcript),
``GET /v1/chat/{id}/image``, ``POST /v1/chat/{id}/messages`` (JSON or server-sent events, as
``/v1/agent``), ``GET /v1/chat/{id}/turns/{index}/mask.png`` (the answer's mask, for download),
``DELETE /v1/chat/{id}`` (the conversation, its image and its agent thread). Without an LLM,
``POST /v1/chat`` answers 503. Stored conversations expire (:mod:`serving.chat.retention`).

The page is a small static HTML/JS/CSS app served by the same FastAPI app: no front-end framework or
Gradio to install, same origin as the API (no CORS), and the same bearer token.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from serving.chat.store import Conversation
from serving.http.agent import SSE_HEADERS, AgentJob, event_stream
from serving.http.common import Runtime, body_doc, load_image_source, read_request, runtime, until_disconnected
from serving.http.errors import ApiError
from serving.http.examples import ConversationId, TurnIndex
from serving.http.schemas import (
    AgentResponse,
    ChatConversation,
    ChatCreate,
    ChatCreated,
    ChatMessage,
    ErrorResponse,
    NoParams,
)
from serving.http.segment import IMAGE_ERRORS

PAGE_DIR = Path(__file__).with_name("page")
router = APIRouter(prefix="/v1/chat", tags=["chat"])
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "unknown conversation"}}


def compose_query(message: str, turns: list[dict[str, Any]], keep: int, *, medium: str = "image") -> str:
    """The query sent to the agent: the message, after a summary of the last ``keep`` turns.

    ``medium`` is ``"image"`` (answers hold ``mask_ids``) or ``"clip"`` (video answers: ``masklet_ids``)."""
    if not turns or keep == 0:
        return message
    noun, key = ("masklet", "masklet_ids") if medium == "clip" else ("mask", "mask_ids")
    lines = [f"Earlier in this conversation about the same {medium}:"]
    for turn in turns[-keep:]:
        answer = turn["answer"]
        if answer["status"] == "answered":
            outcome = f"the answer was {noun}(s) {answer[key]}"
        elif answer["status"] == "no_mask":
            outcome = f"nothing in the {medium} matched"
        else:
            outcome = "no answer was found"
        lines.append(f'- the user asked "{turn["message"]}"; {outcome}.')
    lines.append(f"Now the user says: {message}")
    lines.append("Read this in the light of the earlier answers: it may narrow the last answer down "
                 f"(\"only the left one\") or add to it (\"also the dog\"). Answer with the complete set of {noun}s.")
    return "\n".join(lines)


async def _conversation(rt: Runtime, conversation_id: str) -> Conversation:
    conversation = await rt.require_chat().aget(conversation_id)
    if conversation is None:
        raise ApiError(404, f"no conversation {conversation_id!r} on this server", "unknown_conversation")
    return conversation


@router.post("", response_model=ChatCreated, responses=IMAGE_ERRORS, openapi_extra=body_doc(ChatCreate, NoParams),
             summary="Start a conversation about an image")
async def create_conversation(request: Request) -> JSONResponse:
    rt = runtime(request)
    rt.require_agent()  # a conversation nobody can answer would only fill the disk (503 without an LLM)
    store = rt.require_chat()
    source, _ = await read_request(request, ChatCreate, NoParams)
    image = await load_image_source(rt, source)
    conversation = await store.acreate(image.pixels)
    if rt.retention is not None:
        await rt.retention.after_write(None)
    return JSONResponse({"conversation_id": conversation.id,
                         "image": {"width": conversation.width, "height": conversation.height}})


@router.get("/{conversation_id}", response_model=ChatConversation, responses=_NOT_FOUND,
            summary="A conversation's transcript")
async def get_conversation(conversation_id: ConversationId, request: Request) -> JSONResponse:
    rt = runtime(request)
    conversation = await _conversation(rt, conversation_id)
    turns = await rt.require_chat().aturns(conversation_id)
    return JSONResponse({"conversation_id": conversation.id, "created": conversation.created, "turns": turns,
                         "image": {"width": conversation.width, "height": conversation.height}})


@router.get("/{conversation_id}/image", response_class=Response, responses=_NOT_FOUND,
            summary="The conversation's image (PNG)")
async def get_image(conversation_id: ConversationId, request: Request) -> Response:
    rt = runtime(request)
    await _conversation(rt, conversation_id)
    return Response(await rt.require_chat().aimage_png(conversation_id), media_type="image/png")


@router.post("/{conversation_id}/messages", response_model=AgentResponse, responses=_NOT_FOUND,
             summary="Send a message (a query or a follow-up) in a conversation")
async def send_message(conversation_id: ConversationId, body: ChatMessage, request: Request) -> Any:
    """Answer the message with the agent on the conversation's thread; ``stream`` as in ``/v1/agent``."""
    rt = runtime(request)
    rt.require_agent()
    store = rt.require_chat()
    await _conversation(rt, conversation_id)
    png = await store.aimage_png(conversation_id)
    image = await rt.intake.decode(png)
    turns = await store.aturns(conversation_id)
    job = AgentJob(rt, image, compose_query(body.message, turns, rt.settings.chat_history_turns), conversation_id,
                   rt.settings.agent, overlay=True, mask_png=True, step_overlays=True)

    async def run(sink: Any = None) -> dict[str, Any]:
        answer = await job.run(sink)
        answer["query"] = body.message
        index = await store.aadd_turn(conversation_id, body.message, answer)
        answer["turn_index"] = index
        return answer

    if body.stream:
        return StreamingResponse(event_stream(run), media_type="text/event-stream", headers=SSE_HEADERS)
    return JSONResponse(await until_disconnected(request, run()))


@router.delete("/{conversation_id}", status_code=204, response_class=Response, responses=_NOT_FOUND,
               summary="Delete a conversation")
async def delete_conversation(conversation_id: ConversationId, request: Request) -> Response:
    """Delete the conversation's image, transcript and agent thread."""
    rt = runtime(request)
    rt.require_chat()
    if rt.retention is None or not await rt.retention.forget(conversation_id):
        raise ApiError(404, f"no conversation {conversation_id!r} on this server", "unknown_conversation")
    return Response(status_code=204)


@router.get("/{conversation_id}/turns/{index}/mask.png", response_class=Response, responses=_NOT_FOUND,
            summary="The mask answering one turn (PNG, 255 inside)")
async def get_mask(conversation_id: ConversationId, index: TurnIndex, request: Request) -> Response:
    rt = runtime(request)
    await _conversation(rt, conversation_id)
    turns = await rt.require_chat().aturns(conversation_id)
    if not 0 <= index < len(turns):
        raise ApiError(404, f"conversation {conversation_id!r} has no turn {index}", "unknown_turn")
    data = base64.b64decode(turns[index]["answer"]["mask_png"])
    headers = {"Content-Disposition": f'attachment; filename="mask-{conversation_id[-8:]}-{index}.png"'}
    return Response(data, media_type="image/png", headers=headers)


def install_chat_page(app: FastAPI) -> None:
    """Serve the page at ``/chat`` and its files under ``/chat/static``."""
    app.mount("/chat/static", StaticFiles(directory=PAGE_DIR), name="chat-static")

    @app.get("/chat", include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html", media_type="text/html")
