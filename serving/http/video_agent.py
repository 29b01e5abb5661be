"""``POST /v1/video/agent``: a query about an uploaded video, answered by the video agent with masklets.

Multipart request: the file part ``video`` and the parameters (:class:`VideoAgentParams`, as a JSON part
``params`` or plain parts). Streamed by default as server-sent events:

* ``progress``: a propagation inside the agent's tools moved on (``frames_done``, ``total``, ``fps``,
  ``objects`` on the latest frame, ``elapsed_s``, ``done``), at most every half second per propagation;
* ``tool_call`` / ``tool_result`` / ``retry``: the agent's steps, as ``/v1/agent`` streams them;
* ``answer``: the result document -- the summary (status, chosen ``masklet_ids``, phrases, steps, usage),
  the YouTube-VIS-style ``videos`` / ``categories`` / ``annotations`` with one COCO RLE per frame of
  every chosen masklet, ``clip`` (how the clip was sampled, :class:`serving.clips.ClipPlan`) and, with
  ``overlay``, ``overlay_png``; or ``error`` (an error document whose ``status`` is the HTTP status it
  would have had).

Bounds, checked before any model work (:mod:`serving.clips`): ``max_frames`` over the server's
``video_agent_max_frames`` is 422, frames over ``max_pixels`` or a clip longer than ``video_max_seconds``
413; a clip with more frames than ``max_frames`` is sampled evenly over its whole length.

With ``"stream": false`` the answer document comes as one JSON response (a client that leaves cancels the
query). The query holds one of the server's video slots while it runs (it waits for one), and its upload
is deleted when it ends.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from langgraph.graph.state import CompiledStateGraph
from pydantic import Field

from agent.answers import VideoAgentAnswer
from agent.graph import build_graph
from agent.masklets import MaskletStore
from agent.settings import VIDEO_AGENT_DEFAULTS, VideoAgentSettings, VideoSettings
from agent.video_agent import run_video_agent
from sam3_core.video.progress import PropagationProgress, ReportingEngine
from serving.clips import ClipPlan, ClipRefused, prepare_clip
from serving.http.agent import SSE_HEADERS, event_stream
from serving.http.common import Runtime, runtime, until_disconnected, with_timeout
from serving.http.errors import ApiError
from serving.http.schemas import StrictModel
from serving.http.stream import EventSink, StreamingGraph
from serving.http.video import _errors, _store, _upload_body, receive_video_form
from serving.http.video_agent_schemas import VIDEO_AGENT_200
from serving.http.video_sessions import remove_folder

router = APIRouter(prefix="/v1/video", tags=["video"])


MAX_FRAMES_DOC = ("most frames the agent looks at (default and cap: the server's video_agent_max_frames, 300 "
                   "unless configured; above the cap HTTP 422 max_frames_over_cap). A clip with more frames is "
                   "sampled evenly over its whole length (every k-th frame from frame 0, k = ceil(frames / "
                   "max_frames)); the answer's frame indices are then those of the sampled frames, and its "
                   "clip.frame_indices gives each one's frame in the uploaded clip")


class VideoAgentParams(StrictModel):
    """``/v1/video/agent`` parameters (the ``params`` part of the multipart request)."""

    query: str = Field(min_length=1, max_length=2000, description="what to find in the video")
    max_steps: int | None = Field(None, ge=1, le=50, description="most agent steps (default: the server's)")
    keyframes: int | None = Field(None, ge=1, le=16, description="keyframes shown to the model per tracked phrase")
    max_frames: int | None = Field(None, ge=1, description=MAX_FRAMES_DOC)
    overlay: bool = Field(False, description="add overlay_png: a few keyframes with the chosen masklets drawn")
    stream: bool = Field(True, description="server-sent events (false: one JSON document at the end)")


def video_agent_settings(max_steps: int | None = None, keyframes: int | None = None) -> VideoAgentSettings:
    """The video agent's settings for a request (the whole video is explored, one engine session at a time)."""
    agent = VIDEO_AGENT_DEFAULTS
    if max_steps is not None:
        agent = dataclasses.replace(agent, max_steps=max_steps)
    video = VideoSettings(max_frames=None, **({"keyframes": keyframes} if keyframes else {}))
    return VideoAgentSettings(agent=agent, video=video)


async def plan_clip(rt: Runtime, path: Path, folder: Path, max_frames: int | None) -> ClipPlan:
    """The clip checked against the server's bounds and sampled to ``max_frames`` (:mod:`serving.clips`);
    422 for ``max_frames`` over the cap, 413 over the pixel or duration limit, 400 unreadable. No model work."""
    limits = rt.settings.clip_limits()
    try:
        frames = limits.frames_for(max_frames)
        return await asyncio.to_thread(prepare_clip, path, folder, frames, limits)
    except ClipRefused as exc:
        raise ApiError(exc.status, str(exc), exc.code) from exc


def _overlay_png(answer: VideoAgentAnswer) -> str | None:
    """Base64 PNG of four keyframes with the chosen masklets drawn and a legend (None without masklets)."""
    if not answer.masklet_ids:
        return None
    buffer = io.BytesIO()
    answer.plot(count=4).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@dataclasses.dataclass
class VideoAgentJob:
    """One query about a clip, run under one video slot; reports to a sink when streamed.

    ``graph``/``thread_id``/``store`` continue an earlier query's thread (chat follow-ups); by default each
    job is a new thread on a new graph.
    """

    rt: Runtime
    plan: ClipPlan
    query: str
    settings: VideoAgentSettings
    overlay: bool = False
    graph: CompiledStateGraph | None = None
    thread_id: str | None = None
    store: MaskletStore | None = None
    #: The overlay's title when it should not be ``query`` (a chat message sent with its earlier turns).
    title: str | None = None

    async def run(self, sink: EventSink | None = None) -> dict[str, Any]:
        engine = self.rt.require_video()
        llm = self.rt.settings.llm
        if llm is None:
            raise ApiError(503, "no LLM is configured on this server (start it with --llm-url)", "not_ready")
        graph: Any = self.graph if self.graph is not None else build_graph()
        if sink is not None:
            loop = asyncio.get_running_loop()

            def report(progress: PropagationProgress, session_id: str) -> None:  # runs in a worker thread
                event = {"type": "progress", **progress.to_json()}
                asyncio.run_coroutine_threadsafe(sink(event), loop)

            engine = ReportingEngine(engine, report)
            graph = StreamingGraph(graph, sink)
        start = time.perf_counter()
        assert self.rt.video_slots is not None
        async with self.rt.video_slots:
            answer = await run_video_agent(engine, llm, self.plan.video, self.query,  # type: ignore[arg-type]
                                           settings=self.settings, graph=graph, thread_id=self.thread_id,
                                           store=self.store)
        document = await asyncio.to_thread(answer.to_json)
        document["clip"] = self.plan.to_json()
        for video in document.get("videos", []):  # the server's folders are nobody's business
            video["name"] = self.plan.name
        shown = dataclasses.replace(answer, query=self.title) if self.title else answer
        if self.overlay and (png := await asyncio.to_thread(_overlay_png, shown)) is not None:
            document["overlay_png"] = png
        document["elapsed_ms"] = round((time.perf_counter() - start) * 1000, 2)
        return document


@router.post("/agent", responses={**_errors(400, 413, 415, 422, 503, 504), **VIDEO_AGENT_200},
             openapi_extra=_upload_body(VideoAgentParams),
             summary="Answer a query about a video with masklets (streamed agent steps)")
async def video_agent_query(request: Request) -> Any:
    """Let the multimodal LLM find the tracked objects (masklets) that answer ``query`` in the uploaded video.

    At most ``max_frames`` frames are looked at (the server's cap, 300 by default; over it: 422): a longer clip
    is sampled evenly over its whole length and ``clip.frame_indices`` maps the answer's frames to the clip's.
    Clips over the server's duration (``video_max_seconds``) or pixel limit are refused with 413.
    """
    rt = runtime(request)
    store = _store(request)
    if rt.settings.llm is None:
        raise ApiError(503, "no LLM is configured on this server (start it with --llm-url)", "not_ready")
    folder, path, params = await receive_video_form(request, store, VideoAgentParams)
    seconds = rt.settings.video_timeout_s
    try:  # every bound is checked before any model work, so a refused clip is a status, not a stream error
        plan = await plan_clip(rt, path, folder, params.max_frames)
    except BaseException:
        remove_folder(folder)
        raise
    job = VideoAgentJob(rt, plan, params.query, video_agent_settings(params.max_steps, params.keyframes),
                        overlay=params.overlay)

    async def run(sink: EventSink | None = None) -> dict[str, Any]:
        try:
            return await with_timeout(job.run(sink), seconds, "the video agent query")
        finally:
            remove_folder(folder)

    if params.stream:
        return StreamingResponse(event_stream(run), media_type="text/event-stream", headers=SSE_HEADERS)
    return JSONResponse(await until_disconnected(request, run()))
