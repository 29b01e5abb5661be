"""``POST /v1/video/agent``: a query about an uploaded video, answered by the video agent with masklets.

Multipart request: the file part ``video`` and the parameters (:class:`VideoAgentParams`, as a JSON part
``params`` or plain parts). Streamed by default as server-sent events:

* ``progress``: a propagation inside the agent's tools moved on (``frames_done``, ``total``, ``fps``,
  ``objects`` on the latest frame, ``elapsed_s``, ``done``), at most every half second per propagation;
* ``tool_call`` / ``tool_result`` / ``retry``: the agent's steps, as ``/v1/agent`` streams them;
* ``answer``: the result document -- the summary (status, chosen ``masklet_ids``, phrases, steps, usage)
  and the YouTube-VIS-style ``videos`` / ``categories`` / ``annotations`` with one COCO RLE per frame of
  every chosen masklet; or ``error`` (an error document whose ``status`` is the HTTP status it would have had).

With ``"stream": false`` the answer document comes as one JSON response. The query holds one of the
server's video slots while it runs (it waits for one), and its upload is deleted when it ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field

from agent.graph import build_graph
from agent.settings import VIDEO_AGENT_DEFAULTS, VideoAgentSettings, VideoSettings
from agent.video_agent import run_video_agent
from sam3_core.video.progress import PropagationProgress, ReportingEngine
from serving.http.agent import SSE_HEADERS, event_stream
from serving.http.common import Runtime, runtime, with_timeout
from serving.http.errors import ApiError
from serving.http.examples import form_hint
from serving.http.forms import params_from_form
from serving.http.schemas import StrictModel
from serving.http.stream import EventSink, StreamingGraph
from serving.http.video import _errors, _save_upload, _store, _upload_body
from serving.http.video_sessions import remove_folder

router = APIRouter(prefix="/v1/video", tags=["video"])


class VideoAgentParams(StrictModel):
    """``/v1/video/agent`` parameters (the ``params`` part of the multipart request)."""

    query: str = Field(min_length=1, max_length=2000, description="what to find in the video")
    max_steps: int | None = Field(None, ge=1, le=50, description="most agent steps (default: the server's)")
    keyframes: int | None = Field(None, ge=1, le=16, description="keyframes shown to the model per tracked phrase")
    stream: bool = Field(True, description="server-sent events (false: one JSON document at the end)")


def video_agent_settings(params: VideoAgentParams) -> VideoAgentSettings:
    """The video agent's settings for a request (the whole video is explored, one engine session at a time)."""
    agent = VIDEO_AGENT_DEFAULTS
    if params.max_steps is not None:
        agent = dataclasses.replace(agent, max_steps=params.max_steps)
    video = VideoSettings(max_frames=None, **({"keyframes": params.keyframes} if params.keyframes else {}))
    return VideoAgentSettings(agent=agent, video=video)


@dataclasses.dataclass
class VideoAgentJob:
    """One uploaded video and query, run under one video slot; reports to a sink when streamed."""

    rt: Runtime
    path: str
    params: VideoAgentParams

    async def run(self, sink: EventSink | None = None) -> dict[str, Any]:
        engine = self.rt.require_video()
        llm = self.rt.settings.llm
        if llm is None:
            raise ApiError(503, "no LLM is configured on this server (start it with --llm-url)", "not_ready")
        graph = None
        if sink is not None:
            loop = asyncio.get_running_loop()

            def report(progress: PropagationProgress, session_id: str) -> None:  # runs in a worker thread
                event = {"type": "progress", **progress.to_json()}
                asyncio.run_coroutine_threadsafe(sink(event), loop)

            engine = ReportingEngine(engine, report)
            graph = StreamingGraph(build_graph(), sink)
        start = time.perf_counter()
        assert self.rt.video_slots is not None
        async with self.rt.video_slots:
            answer = await run_video_agent(engine, llm, self.path, self.params.query,  # type: ignore[arg-type]
                                           settings=video_agent_settings(self.params), graph=graph)
        document = await asyncio.to_thread(answer.to_json)
        document["elapsed_ms"] = round((time.perf_counter() - start) * 1000, 2)
        return document


@router.post("/agent", responses=_errors(400, 413, 415, 422, 503, 504), openapi_extra=_upload_body(VideoAgentParams),
             summary="Answer a query about a video with masklets (streamed agent steps)")
async def video_agent_query(request: Request) -> Any:
    """Let the multimodal LLM find the tracked objects (masklets) that answer ``query`` in the uploaded video."""
    rt = runtime(request)
    store = _store(request)
    if rt.settings.llm is None:
        raise ApiError(503, "no LLM is configured on this server (start it with --llm-url)", "not_ready")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        raise ApiError(415, f"send the video as multipart/form-data: {form_hint(VideoAgentParams, 'video')}",
                       "unsupported_media_type")
    folder = store.new_folder()
    try:
        path, parts = await _save_upload(request, folder, VideoAgentParams)
        params = params_from_form(parts, VideoAgentParams, "video")
    except BaseException:
        remove_folder(folder)
        raise
    job = VideoAgentJob(rt, str(path), params)
    seconds = rt.settings.video_timeout_s

    async def run(sink: EventSink | None = None) -> dict[str, Any]:
        try:
            return await with_timeout(job.run(sink), seconds, "the video agent query")
        finally:
            remove_folder(folder)

    if params.stream:
        return StreamingResponse(event_stream(run), media_type="text/event-stream", headers=SSE_HEADERS)
    return JSONResponse(await run())
