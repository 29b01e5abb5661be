"""Request and response models of the HTTP API (they are also its published OpenAPI schema).

Every endpoint that takes an image accepts it two ways:

* ``application/json``: the request model below, with ``image`` as ``{"base64": ...}`` (the encoded
  file's bytes; a ``data:`` URL is fine) or ``{"url": ...}`` (only when the server allows URL images);
* ``multipart/form-data``: the file in the part ``image`` and the other fields either as plain parts
  (``curl -F image=@street.jpg -F phrases=car -F phrases=bus -F score_threshold=0.4``; a list by repeating
  its part) or as a JSON object in the part ``params`` (``-F 'params={"phrases": ["car"]}'``); see
  :mod:`serving.http.forms`. Example bodies are in :mod:`serving.http.examples` and in the OpenAPI schema.

Coordinates are pixels of the original image; boxes are ``[x1, y1, x2, y2]``. Masks come as COCO RLE
(``{"size": [H, W], "counts": str}``, decode with ``pycocotools.mask.decode`` or
:func:`sam3_core.postprocess.rle_to_mask`), and on request as a base64 PNG (one channel, 0/255) or as
COCO polygons (flat ``[x0, y0, x1, y1, ...]`` lists, outer boundaries only).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Box = Annotated[list[float], Field(min_length=4, max_length=4, description="pixel [x1, y1, x2, y2]")]
Point = Annotated[list[float], Field(min_length=2, max_length=2, description="pixel [x, y]")]
MaskFormat = Literal["rle", "png", "polygons"]
FORMATS_DESCRIPTION = "mask encodings to return: 'rle' (COCO RLE), 'png' (base64 PNG, 0/255), 'polygons'"


class StrictModel(BaseModel):
    """Request models: unknown fields are refused (422), so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")


class ImageSpec(StrictModel):
    """An image given inside a JSON body: exactly one of ``base64`` and ``url``."""

    base64: str | None = Field(None, description="base64 of the image file (JPEG, PNG, WebP, ...); a data: URL is "
                                                  "accepted")
    url: str | None = Field(None, description="http(s) URL of the image; refused unless the server was started with "
                                              "--allow-url-images")

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageSpec:
        if (self.base64 is None) == (self.url is None):
            raise ValueError("give exactly one of image.base64 and image.url")
        return self


# ----------------------------------------------------------------------------------------- segment


class SegmentParams(StrictModel):
    """``/v1/segment`` fields other than the image (the ``params`` part of a multipart request)."""

    phrases: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=32, description="short noun phrases; every instance of each is returned")
    exemplar_boxes: list[Box] | None = Field(None, max_length=32, description="boxes of example instances, applied "
                                                                              "to every phrase; alone they prompt "
                                                                              "by example")
    exemplar_labels: list[Literal[0, 1]] | None = Field(None, description="per exemplar box: 1 positive, 0 negative")
    score_threshold: float | None = Field(None, ge=0.0, le=1.0, description="keep instances scoring above this "
                                                                            "(default: the server's)")
    mask_threshold: float = Field(0.5, ge=0.0, le=1.0, description="mask probability threshold")
    formats: list[MaskFormat] = Field(default_factory=lambda: ["rle"], description=FORMATS_DESCRIPTION)
    polygon_tolerance: float = Field(0.0, ge=0.0, le=50.0, description="polygon simplification in pixels (0: exact)")


class SegmentRequest(SegmentParams):
    """``POST /v1/segment`` as JSON."""

    image: ImageSpec


class Rle(BaseModel):
    """COCO run-length encoding of one mask."""

    size: list[int] = Field(description="[height, width]")
    counts: str


class MaskOut(BaseModel):
    """One mask with its score and box, in the encodings asked for."""

    score: float
    box_xyxy: list[float]
    area: int = Field(description="mask pixels")
    rle: Rle | None = None
    png_base64: str | None = Field(None, description="single-channel PNG, 255 inside the mask")
    polygons: list[list[float]] | None = None


class ImageInfo(BaseModel):
    width: int
    height: int


class PhraseOut(BaseModel):
    """All instances found for one phrase, best first."""

    phrase: str
    presence_score: float
    truncated: bool = Field(description="the phrase was longer than SAM 3's 32 tokens and was cut")
    instances: list[MaskOut]


class SegmentResponse(BaseModel):
    image: ImageInfo
    results: list[PhraseOut]
    elapsed_ms: float


# ----------------------------------------------------------------------------------------- refine


class MaskLogits(StrictModel):
    """A 2-D float array of mask logits: row-major little-endian values, base64-encoded."""

    shape: list[Annotated[int, Field(ge=1, le=2048)]] = Field(min_length=2, max_length=2, description="[h, w]")
    dtype: Literal["float16", "float32"] = "float16"
    base64: str = Field(description="base64 of the h*w values")


class RefineParams(StrictModel):
    """``/v1/refine`` fields other than the image."""

    points: list[Point] | None = Field(None, max_length=64, description="clicks")
    point_labels: list[Literal[0, 1]] | None = Field(None, description="per click: 1 foreground, 0 background")
    box: Box | None = Field(None, description="a box around the object")
    multimask: bool | None = Field(None, description="let the model pick the best of three masks (default: only for "
                                                     "a single click)")
    mask_input: MaskLogits | None = Field(None, description="low_res_logits of an earlier /v1/refine of the same "
                                                            "image: refine that mask with these clicks / box")
    return_logits: bool = Field(True, description="include low_res_logits in the answer (to pass back as "
                                                  "mask_input)")
    formats: list[MaskFormat] = Field(default_factory=lambda: ["rle"], description=FORMATS_DESCRIPTION)
    polygon_tolerance: float = Field(0.0, ge=0.0, le=50.0)


class RefineRequest(RefineParams):
    """``POST /v1/refine`` as JSON."""

    image: ImageSpec


class RefineResponse(BaseModel):
    image: ImageInfo
    mask: MaskOut = Field(description="the object's mask; score is the model's predicted IoU")
    low_res_logits: MaskLogits | None = Field(None, description="the mask's logits at the model's low resolution "
                                                                "(with return_logits)")
    elapsed_ms: float


# ----------------------------------------------------------------------------------------- agent


class AgentParams(StrictModel):
    """``/v1/agent`` fields other than the image."""

    query: str = Field(min_length=1, max_length=2000, description="what to segment, in plain words")
    thread_id: str | None = Field(None, max_length=200, pattern=r"^[\w.:-]+$",
                                  description="continue this thread (same image): earlier masks keep their ids")
    stream: bool = Field(False, description="answer as server-sent events: each step, then the answer")
    include_overlay: bool = Field(False, description="add overlay_png: the image with the chosen masks drawn")
    include_mask_png: bool = Field(False, description="add mask_png: the union of the chosen masks as a PNG")
    score_threshold: float | None = Field(None, ge=0.0, le=1.0, description="SAM 3 score threshold for this query")
    max_steps: int | None = Field(None, ge=1, le=50, description="most LLM replies for this query")
    verification: bool | None = Field(None, description="offer the per-mask verification tool to the LLM")


class AgentRequest(AgentParams):
    """``POST /v1/agent`` as JSON."""

    image: ImageSpec


class AgentMask(BaseModel):
    """One mask of the answer."""

    id: int = Field(description="the mask's id on the thread (stable across follow-up queries)")
    phrase: str = Field(description="the phrase that found it")
    score: float
    box_xyxy: list[float]
    rle: Rle


class AgentResponse(BaseModel):
    """The agent's answer to one query."""

    query: str
    status: Literal["answered", "no_mask", "budget_exhausted", "failed"]
    error: str = Field(description="why there is no answer; empty when answered")
    mask_ids: list[int]
    masks: list[AgentMask]
    steps: int
    verify_calls: int
    phrases_tried: list[str]
    thread_id: str
    usage: dict[str, int]
    image: ImageInfo
    overlay_png: str | None = Field(None, description="base64 PNG of the image with the chosen masks")
    mask_png: str | None = Field(None, description="base64 PNG of the union of the chosen masks (0/255)")
    elapsed_ms: float


class AgentEvent(BaseModel):
    """One server-sent event of a streamed agent run (``event:`` is ``type``).

    Types: ``tool_call`` (``name``, ``arguments``), ``tool_result`` (``name``, ``text``, ``candidates``
    and, when overlays were asked for, ``overlay_png``), ``retry`` (``text``: what the model got wrong),
    ``answer`` (``answer``: an :class:`AgentResponse`), ``error`` (``error``: the error document).
    """

    type: Literal["tool_call", "tool_result", "retry", "answer", "error"]
    step: int = 0
    name: str | None = None
    arguments: dict[str, Any] | None = None
    text: str | None = None
    candidates: list[dict[str, Any]] | None = None
    overlay_png: str | None = None
    answer: AgentResponse | None = None
    error: dict[str, Any] | None = None


# ----------------------------------------------------------------------------------------- chat


class ChatCreate(StrictModel):
    """``POST /v1/chat`` as JSON (or a multipart upload with the file in ``image``)."""

    image: ImageSpec


class NoParams(StrictModel):
    """No parameters besides the image (the ``params`` part of a multipart ``POST /v1/chat``)."""


class ChatCreated(BaseModel):
    conversation_id: str
    image: ImageInfo


class ChatMessage(StrictModel):
    """``POST /v1/chat/{conversation_id}/messages``."""

    message: str = Field(min_length=1, max_length=2000, description="a query, or a follow-up such as 'only the left "
                                                                     "one'")
    stream: bool = Field(False, description="answer as server-sent events (as /v1/agent)")


class ChatTurn(BaseModel):
    index: int
    message: str
    answer: AgentResponse


class ChatConversation(BaseModel):
    conversation_id: str
    image: ImageInfo
    created: float
    turns: list[ChatTurn]


# ----------------------------------------------------------------------------------------- video


class VideoPromptFields(StrictModel):
    """Prompts for a video: phrases (every instance, found while propagating) and/or one object's clicks or box."""

    phrases: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=16, description="track every instance of each phrase")
    frame_index: int = Field(0, ge=0, description="the frame that points / box are on")
    points: list[Point] | None = Field(None, max_length=64, description="clicks on frame_index")
    point_labels: list[Literal[0, 1]] | None = Field(None, description="per click: 1 object, 0 background "
                                                                       "(default all 1)")
    box: Box | None = Field(None, description="a box on frame_index (with points: both prompt the same object)")


class VideoPropagateFields(StrictModel):
    """How to propagate: from which frame, which way, how far, and whether masks are returned."""

    start_frame: int | None = Field(None, ge=0, description="first frame (default: 0 with phrases, else the "
                                                            "earliest prompted frame)")
    direction: Literal["forward", "backward", "both"] = "forward"
    max_frames: int | None = Field(None, ge=1, description="most frames per direction")
    masks: bool = Field(True, description="include each object's COCO RLE (false: boxes and scores only)")


class VideoParams(VideoPromptFields, VideoPropagateFields):
    """``/v1/video/track`` parameters (the ``params`` part of the multipart request)."""

    stream: bool = Field(False, description="answer as server-sent events, one per frame")


class VideoSessionCreate(StrictModel):
    """``POST /v1/video/sessions`` as JSON: a video already on the server (only with a video root)."""

    path: str = Field(min_length=1, max_length=1000, description="file or frame folder, relative to the "
                                                                 "server's video root")


class VideoPrompt(VideoPromptFields):
    """``POST /v1/video/sessions/{session_id}/prompts``: phrases, and/or clicks or a box on one frame."""

    object_id: int | None = Field(None, ge=0, description="refine this object (default: points / box start a "
                                                          "new one)")
    masks: bool = Field(True, description="include each object's COCO RLE in the frame")


class VideoPropagate(VideoPropagateFields):
    """``POST /v1/video/sessions/{session_id}/propagate``."""

    stream: bool = Field(True, description="server-sent events, one per frame (false: one JSON document)")


class VideoObject(BaseModel):
    object_id: int
    phrase: str | None = Field(description="the phrase that found it; null for objects from clicks or a box")
    score: float
    tracker_score: float
    box_xyxy: list[float]
    rle: Rle | None = None


class VideoFrame(BaseModel):
    frame_index: int
    objects: list[VideoObject]


class VideoInfo(BaseModel):
    num_frames: int
    width: int
    height: int
    fps: float


class VideoResponse(BaseModel):
    video: VideoInfo
    frames: list[VideoFrame]
    elapsed_ms: float


class VideoSessionOut(BaseModel):
    """A video session: its video and what it tracks."""

    session_id: str
    video: VideoInfo
    phrases: list[str]
    object_ids: list[int] = Field(description="objects tracked so far (phrase objects appear while propagating)")
    idle_timeout_s: float = Field(description="the session is closed after this long unused")


class VideoPromptResponse(BaseModel):
    session_id: str
    phrases: list[str] = Field(description="every phrase of the session")
    object_id: int | None = Field(description="the clicked / boxed object (null for phrases alone)")
    frame: VideoFrame | None = Field(description="every object on frame_index after the clicks / box")


class VideoFramesResponse(BaseModel):
    session_id: str
    frames: list[VideoFrame]
    elapsed_ms: float


class VideoEvent(BaseModel):
    """One server-sent event of a streamed propagation (``event:`` is ``type``): ``start`` (``video``, only
    from ``/v1/video/track``), one ``frame`` per frame, ``progress`` (after the first frame, at most every half
    second, and once with ``done: true`` at the end), then ``done`` (``frames``: the count) or ``error``."""

    type: Literal["start", "frame", "progress", "done", "error"]
    video: VideoInfo | None = None
    frame: VideoFrame | None = None
    frames: int | None = None
    frames_done: int | None = Field(None, description="progress: frames done so far")
    total: int | None = Field(None, description="progress: frames the propagation visits (null when unknown)")
    fps: float | None = Field(None, description="progress: frames per second so far")
    objects: int | None = Field(None, description="progress: objects on the latest frame")
    elapsed_s: float | None = Field(None, description="progress: seconds since the propagation started")
    done: bool | None = Field(None, description="progress: the propagation has ended")
    error: dict[str, Any] | None = None


# ----------------------------------------------------------------------------------------- service


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    detail: str = ""


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
