"""OpenAPI models of the video agent's answers and events (``/v1/video/agent`` and ``/v1/chat/clips``).

Documentation only: the routes send the documents :meth:`agent.answers.VideoAgentAnswer.to_json` builds,
with the serving layer's additions (``clip``, ``overlay_png``, ``elapsed_ms``, ``turn_index``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ClipInfo(BaseModel):
    """How the uploaded clip became the frames the agent saw (:class:`serving.clips.ClipPlan`)."""

    source_frames: int = Field(description="frames of the uploaded clip")
    fps: float = Field(description="its frame rate")
    width: int
    height: int
    stride: int = Field(description="every stride-th frame was kept (1: every frame)")
    frames: int = Field(description="frames the agent saw; the answer's frame indices count these")
    frame_indices: list[int] = Field(description="per frame the agent saw, its index in the uploaded clip")


class VideoAgentResult(BaseModel):
    """A video agent's answer: the summary, the chosen masklets YouTube-VIS-style, and how the clip was sampled."""

    query: str
    status: Literal["answered", "no_mask", "budget_exhausted", "failed"]
    masklet_ids: list[int] = Field(description="the chosen masklets (object_id in annotations)")
    phrases: list[str]
    scores: list[float]
    error: str
    cause: str
    steps: int
    phrases_tried: list[str]
    refinements: int
    usage: dict[str, Any]
    timings: dict[str, Any]
    videos: list[dict[str, Any]] = Field(description="YouTube-VIS videos (one: length = frames the agent saw)")
    categories: list[dict[str, Any]]
    annotations: list[dict[str, Any]] = Field(description="per chosen masklet: object_id, phrase, score and per "
                                                          "frame a COCO RLE (null where it is not) and a box")
    clip: ClipInfo
    overlay_png: str | None = Field(None, description="base64 PNG: keyframes with the chosen masklets drawn "
                                                      "(with overlay, and always in chat answers)")
    elapsed_ms: float
    turn_index: int | None = Field(None, description="chat answers: the turn's index in the conversation")


class VideoAgentEvent(BaseModel):
    """One server-sent event of a streamed video agent query (``event:`` is ``type``).

    ``progress`` (``frames_done``, ``total``, ``fps``, ``objects`` on the latest frame, ``elapsed_s``,
    ``done``: a phrase or refinement being tracked), ``tool_call``, ``tool_result``, ``retry`` (the agent's
    steps, as in ``/v1/agent``), then ``answer`` (``answer``: a :class:`VideoAgentResult`) or ``error``.
    """

    type: Literal["progress", "tool_call", "tool_result", "retry", "answer", "error"]
    frames_done: int | None = None
    total: int | None = None
    fps: float | None = None
    objects: int | None = None
    elapsed_s: float | None = None
    done: bool | None = None
    step: int | None = None
    name: str | None = None
    arguments: dict[str, Any] | None = None
    text: str | None = None
    candidates: list[dict[str, Any]] | None = None
    answer: VideoAgentResult | None = None
    error: dict[str, Any] | None = None


#: The 200 response of the video agent routes: one JSON answer, or with ``stream`` the events.
VIDEO_AGENT_200: dict[int | str, dict[str, Any]] = {200: {
    "model": VideoAgentResult,
    "description": "the answer; with stream=true a text/event-stream of VideoAgentEvent documents",
    "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/VideoAgentEvent"}}}}}


def document_clip_caps(schema: dict[str, Any], max_frames: int) -> None:
    """Put this server's ``max_frames`` cap into the OpenAPI ``schema`` as the field's ``maximum`` (the routes
    check it themselves, so that the 422 names the cap) wherever a request body has a ``max_frames`` for clips."""
    for path in ("/v1/video/agent", "/v1/chat/clips"):
        body = schema.get("paths", {}).get(path, {}).get("post", {}).get("requestBody", {})
        for media in body.get("content", {}).values():
            field = media.get("schema", {}).get("properties", {}).get("max_frames")
            if field is None:
                continue
            for option in field.get("anyOf", [field]):
                if option.get("type") == "integer":
                    option["maximum"] = max_frames
            field["description"] = f"{field.get('description', '')} This server's cap: {max_frames}."
