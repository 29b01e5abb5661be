"""The agent's settings: plain frozen dataclasses whose defaults are the documented defaults everywhere.

:class:`AgentSettings` holds the limits and switches every agent run has (budgets, thresholds, which tools
are offered). :class:`VideoSettings` holds what only a video query has (how much of the video is tracked
while exploring, keyframes, refinement). :class:`VideoAgentSettings` composes the two for the video agent;
its ``agent`` part defaults to the video-appropriate values (see :data:`VIDEO_AGENT_DEFAULTS`).

The CLI, the HTTP API and the MCP server read their defaults from these fields, so each default is
stated once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sam3_core.errors import UsageError

#: Most keyframes one overlay may show.
MAX_KEYFRAMES = 16


@dataclass(frozen=True)
class AgentSettings:
    """Limits and switches of the agent; the defaults suit a real SAM 3 and a capable MLLM."""

    #: Most main-loop LLM replies per query; when used up the query ends as ``budget_exhausted``.
    max_steps: int = 12
    #: Wall-time limit of a query in seconds (None: none). A model call or tool still running at the
    #: deadline is abandoned and the query ends as ``budget_exhausted`` with the best answer so far.
    max_seconds: float | None = None
    #: LLM token limit of a query (prompt + completion, verification calls included; None: none). It is
    #: checked before every main-loop call, so the step that crosses it still completes.
    max_tokens: int | None = None
    #: Most distinct phrases ``segment_phrase`` runs per query; further calls are refused (ModelRetry).
    max_phrases: int = 8
    #: Invalid replies / failed tool calls in a row that are answered with a retry message; one more
    #: ends the query as ``failed``.
    max_retries: int = 3
    #: SAM 3 keeps instances scoring above this (object score x presence score).
    score_threshold: float = 0.5
    #: Within one phrase, a mask whose intersection over the smaller area with a better one exceeds
    #: this is dropped (1.0 keeps all).
    iom_threshold: float = 0.5
    #: A new mask whose IoU with a mask already on the thread exceeds this is a duplicate: it gets no
    #: new id and the tool result names the existing id instead.
    duplicate_iou: float = 0.9
    #: Most masks one phrase adds (best scores first), to keep overlays legible.
    max_masks_per_phrase: int = 20
    #: Offer ``examine_each_mask`` (one verification question per candidate mask) to the model.
    verification: bool = True
    #: Pixel budget of every image sent to the LLM; None uses ``LLMConfig.image_max_pixels``.
    image_max_pixels: int | None = None

    def __post_init__(self) -> None:
        if min(self.max_steps, self.max_phrases, self.max_masks_per_phrase) < 1 or self.max_retries < 0:
            raise UsageError("max_steps, max_phrases and max_masks_per_phrase must be >= 1, max_retries >= 0")
        for name in ("score_threshold", "iom_threshold", "duplicate_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.image_max_pixels is not None and self.image_max_pixels < 1:
            raise UsageError(f"image_max_pixels must be >= 1 or None, got {self.image_max_pixels}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise UsageError(f"max_seconds must be > 0 or None, got {self.max_seconds}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise UsageError(f"max_tokens must be >= 1 or None, got {self.max_tokens}")


#: The video agent's defaults for the shared settings: masklets are kept whatever their detection score
#: (the video engine's own thresholds decide which objects are tracked; raise it to drop weak ones), and
#: ``examine_each_mask`` is not offered. ``iom_threshold`` is not used for videos (the engine separates a
#: phrase's instances itself); ``duplicate_iou`` compares whole tracks (spatio-temporal IoU) and
#: ``max_masks_per_phrase`` caps the masklets one phrase adds.
VIDEO_AGENT_DEFAULTS = AgentSettings(score_threshold=0.0, verification=False)


@dataclass(frozen=True)
class VideoSettings:
    """What only a video query has: exploration length, keyframes shown, refinement."""

    #: Frames ``segment_phrase`` tracks each phrase over while the agent explores, from frame 0; None:
    #: the whole video. The answer always covers the whole video: the chosen masklets are tracked on to
    #: the end after the model has answered.
    max_frames: int | None = None
    #: Keyframes shown to the model: frames of the video with the query, and frames where masklets are
    #: (every masklet on at least one when there are enough) after each ``segment_phrase``.
    keyframes: int = 4
    #: Show the keyframes as one contact sheet (a captioned grid); False: one image per keyframe.
    keyframe_sheet: bool = True
    #: Offer ``refine_masklet`` (clicks on one frame, then the object is tracked again).
    refinement: bool = True
    #: Most ``refine_masklet`` calls per query; further calls are refused (ModelRetry).
    max_refinements: int = 4

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"max_frames must be >= 1 or None, got {self.max_frames}")
        if not 1 <= self.keyframes <= MAX_KEYFRAMES:
            raise UsageError(f"keyframes must be in [1, {MAX_KEYFRAMES}], got {self.keyframes}")
        if self.max_refinements < 0:
            raise UsageError(f"max_refinements must be >= 0, got {self.max_refinements}")


@dataclass(frozen=True)
class VideoAgentSettings:
    """Settings of the video agent: the shared ``agent`` limits and the ``video`` specifics."""

    #: Budgets and thresholds, as for images (video defaults: :data:`VIDEO_AGENT_DEFAULTS`).
    agent: AgentSettings = field(default_factory=lambda: VIDEO_AGENT_DEFAULTS)
    #: Exploration length, keyframes and refinement.
    video: VideoSettings = field(default_factory=VideoSettings)

    def __post_init__(self) -> None:
        if self.agent.verification:
            raise UsageError("examine_each_mask is not available for videos: keep agent.verification=False")
