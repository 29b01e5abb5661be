"""``POST /v1/agent``: one reasoning-segmentation query, answered as JSON or streamed as server-sent events.

Streaming (``"stream": true``) sends ``tool_call`` / ``tool_result`` / ``retry`` events while the agent
works (see :mod:`serving.http.stream`), then one ``answer`` event with the same document the JSON
answer has, or one ``error`` event with an error document (its ``status`` is the HTTP status the
error would have had). Errors found before the run starts (bad image, auth, not ready) are ordinary
JSON error responses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from agent.runner import AgentAnswer, run_agent
from agent.settings import AgentSettings
from sam3_core.images import LoadedImage
from sam3_core.postprocess import masks_to_rle
from serving.http.common import (
    Runtime,
    body_doc,
    load_image_source,
    read_request,
    runtime,
    sse,
    until_disconnected,
    with_timeout,
)
from serving.http.errors import ApiError, classify, error_body, redact
from serving.http.examples import ThreadId
from serving.http.render import b64, final_overlay_png, mask_png
from serving.http.schemas import AgentParams, AgentRequest, AgentResponse, ErrorResponse
from serving.http.segment import IMAGE_ERRORS
from serving.http.stream import EventSink, StreamingGraph

router = APIRouter(prefix="/v1", tags=["agent"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def answer_document(answer: AgentAnswer, image: LoadedImage, *, overlay: bool, mask: bool,
                    elapsed_s: float) -> dict[str, Any]:
    """The :class:`~serving.http.schemas.AgentResponse` document of an answer (runs RLE and PNG encoding)."""
    rles = masks_to_rle(answer.masks) if len(answer.masks) else []
    masks = [{"id": i, "phrase": p, "score": round(float(s), 6), "box_xyxy": [round(float(v), 2) for v in box],
              "rle": rle} for i, p, s, box, rle in zip(answer.mask_ids, answer.phrases, answer.scores,
                                                         answer.boxes, rles)]
    return {
        "query": answer.query, "status": answer.status, "error": redact(answer.error) if answer.error else answer.error,
        "mask_ids": answer.mask_ids,
        "masks": masks, "steps": answer.steps, "verify_calls": answer.verify_calls,
        "phrases_tried": answer.phrases_tried, "thread_id": answer.thread_id,
        "usage": dataclasses.asdict(answer.usage), "image": {"width": image.width, "height": image.height},
        "overlay_png": final_overlay_png(image.pixels, answer.masks, answer.mask_ids) if overlay else None,
        "mask_png": b64(mask_png(answer.mask)) if mask else None,
        "elapsed_ms": round(elapsed_s * 1000, 2),
    }


def settings_for(base: AgentSettings, params: AgentParams) -> AgentSettings:
    """The server's agent settings with the request's overrides."""
    changes = {name: value for name in ("score_threshold", "max_steps", "verification")
               if (value := getattr(params, name)) is not None}
    return dataclasses.replace(base, **changes) if changes else base


@dataclass
class AgentJob:
    """One agent query with everything needed to run it and to shape its answer."""

    rt: Runtime
    image: LoadedImage
    query: str
    thread_id: str | None
    settings: AgentSettings
    overlay: bool = False
    mask_png: bool = False
    step_overlays: bool = False

    async def run(self, sink: EventSink | None = None) -> dict[str, Any]:
        """Run the query (reporting steps to ``sink`` when given); returns the answer document."""
        engine, llm, graph = self.rt.require_agent()
        start = time.perf_counter()
        runnable = graph if sink is None else StreamingGraph(graph, sink, overlays=self.step_overlays)
        work = run_agent(engine, llm, self.image, self.query, settings=self.settings, thread_id=self.thread_id,
                         graph=runnable)  # type: ignore[arg-type]  # StreamingGraph duck-types the two methods used
        try:
            answer = await with_timeout(work, self.rt.settings.agent_timeout_s, "the agent query")
        except Exception:
            self.rt.metrics.agent_queries.labels("error").inc()
            raise
        self.rt.metrics.agent_queries.labels(answer.status).inc()
        if self.rt.retention is not None:
            await self.rt.retention.after_write(answer.thread_id)
        return await asyncio.to_thread(answer_document, answer, self.image, overlay=self.overlay,
                                       mask=self.mask_png, elapsed_s=time.perf_counter() - start)


async def event_stream(run: Callable[[EventSink], Awaitable[dict[str, Any]]]) -> AsyncIterator[str]:
    """Server-sent events of ``run``: its step events, then ``answer`` or ``error``.

    The run is a task of its own; when the client disconnects the generator is closed and the task
    cancelled.
    """
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def produce() -> None:
        try:
            await queue.put({"type": "answer", "answer": await run(queue.put)})
        except Exception as exc:
            error = classify(exc)
            await queue.put({"type": "error", "error": error_body(error.status, error.message, error.code)["error"]})
        finally:
            await queue.put(None)

    task = asyncio.create_task(produce())
    try:
        while (event := await queue.get()) is not None:
            yield sse(event)
    finally:
        if not task.done():
            task.cancel()


STREAM_DOC = {"description": "the answer; with stream=true a text/event-stream of AgentEvent documents",
              "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/AgentEvent"}}}}


@router.post("/agent", response_model=AgentResponse, responses={**IMAGE_ERRORS, 200: STREAM_DOC},
             openapi_extra=body_doc(AgentRequest, AgentParams), summary="Answer a query with the SAM 3 agent")
async def agent_query(request: Request) -> Any:
    """Let the multimodal LLM find the masks that answer ``query``, using SAM 3 as its tool.

    Pass ``thread_id`` from an earlier answer (same image) to ask a follow-up that can reuse its masks.
    ``status`` is ``answered`` (masks chosen), ``no_mask`` (the target is not in the image),
    ``budget_exhausted`` or ``failed`` (no answer; ``error`` says why).
    """
    rt = runtime(request)
    rt.require_agent()
    source, params = await read_request(request, AgentRequest, AgentParams)
    image = await load_image_source(rt, source)
    job = AgentJob(rt, image, params.query, params.thread_id, settings_for(rt.settings.agent, params),
                   overlay=params.include_overlay, mask_png=params.include_mask_png,
                   step_overlays=params.include_overlay)
    if params.stream:
        return StreamingResponse(event_stream(job.run), media_type="text/event-stream", headers=SSE_HEADERS)
    return JSONResponse(await until_disconnected(request, job.run()))


@router.delete("/agent/threads/{thread_id}", status_code=204, response_class=Response,
               responses={404: {"model": ErrorResponse, "description": "no such thread"}},
               summary="Forget an agent thread")
async def delete_thread(thread_id: ThreadId, request: Request) -> Response:
    """Delete the thread's checkpoints (its masks and messages); a later ``thread_id`` of it starts afresh."""
    rt = runtime(request)
    rt.require_chat()
    if rt.retention is None or not await rt.retention.forget(thread_id):
        raise ApiError(404, f"no agent thread {thread_id!r} on this server", "unknown_thread")
    return Response(status_code=204)
