"""The video agent's settings and run context.

:class:`VideoAgentSettings` extends the image agent's :class:`~agent.state.AgentSettings` (same budgets:
``max_steps``, ``max_seconds``, ``max_tokens``, ``max_phrases``, ``max_retries``, ``image_max_pixels``)
with how much of the video is tracked while the agent explores and how many keyframes it sees.

:class:`VideoContext` is the LangGraph run context of a video query: what :class:`~agent.state.Context`
is to an image query. It carries the LLM client, the :class:`~sam3_core.video.VideoEngine`, the video
(opened once for drawing keyframes), the query's :class:`~agent.masklets.MaskletStore` and the media
hooks (:data:`agent.video_agent.VIDEO_MEDIA`) through which the shared graph offers the video tools and
builds the conversation. Like the image context, it lives for one query and is never checkpointed.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.keyframes import choose_keyframes
from agent.llm import LLMClient
from agent.masklets import MaskletStore, Track
from agent.state import AgentSettings, ImageParts, Media, State
from sam3_core.errors import UsageError
from sam3_core.video import FrameSource, VideoEngine

#: Most keyframes one overlay may show.
MAX_KEYFRAMES = 16

#: A video the agent accepts: a file, a folder of frames, or frames in memory (``(T, H, W, 3)`` uint8).
VideoInput = str | os.PathLike | np.ndarray | Sequence[np.ndarray]


@dataclass(frozen=True)
class VideoAgentSettings(AgentSettings):
    """Limits and switches of the video agent (the inherited ones mean what they mean for images).

    Changed defaults: ``score_threshold`` 0.0 (masklets are kept whatever their detection score: the
    video engine's own thresholds, :class:`~sam3_core.video.VideoOptions`, decide which objects are
    tracked; raise it to drop weak ones) and ``verification`` False (``examine_each_mask`` is not offered
    for videos; True is refused). ``iom_threshold`` is not used: the engine separates the instances of a
    phrase itself. ``duplicate_iou`` compares whole tracks (spatio-temporal IoU) across phrases, and
    ``max_masks_per_phrase`` caps the masklets one phrase adds.
    """

    score_threshold: float = 0.0
    verification: bool = False
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
        super().__post_init__()
        if self.verification:
            raise UsageError("examine_each_mask is not available for videos: keep verification=False")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"max_frames must be >= 1 or None, got {self.max_frames}")
        if not 1 <= self.keyframes <= MAX_KEYFRAMES:
            raise UsageError(f"keyframes must be in [1, {MAX_KEYFRAMES}], got {self.keyframes}")
        if self.max_refinements < 0:
            raise UsageError(f"max_refinements must be >= 0, got {self.max_refinements}")


@dataclass(frozen=True)
class VideoContext(ImageParts):
    """Run dependencies of one video query, given to every node as ``runtime.context``."""

    #: The multimodal LLM (its config picks the tool protocol).
    llm: LLMClient
    #: The SAM 3 video engine; every phrase and refinement gets a session of its own.
    engine: VideoEngine
    #: The video as each engine session opens it: a file, a folder of frames or a ``(T, H, W, 3)`` array.
    video: VideoInput
    #: The same video, decoded on demand, for drawing keyframes.
    source: FrameSource
    #: The graph's hooks for videos (:data:`agent.video_agent.VIDEO_MEDIA`).
    media: Media
    #: Limits and switches.
    settings: VideoAgentSettings = field(default_factory=VideoAgentSettings)
    #: The masklets' tracks and open sessions of this query.
    store: MaskletStore = field(default_factory=MaskletStore)
    #: Per-query cache of encoded images; keys are tuples whose first item says what they hold.
    cache: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        """The video's key for the thread check (name, frame count and size)."""
        source = self.source
        return f"video:{source.name}:{source.num_frames}:{source.height}x{source.width}"

    @property
    def num_frames(self) -> int:
        """Frames in the video."""
        return self.source.num_frames

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``(H, W, 3)`` uint8 RGB."""
        return self.source.frame(index)

    def candidate_tracks(self, state: State) -> dict[int, Track]:
        """``{masklet id: track}`` of the state's candidate masklets, in id order."""
        return self.store.tracks(state.candidate_ids())

    def keyframes(self, state: State) -> list[int]:
        """The keyframes showing the state's candidate masklets (see :func:`agent.keyframes.choose_keyframes`)."""
        presence = {i: track.frames.keys() for i, track in self.candidate_tracks(state).items()}
        return choose_keyframes(presence, self.settings.keyframes)
