"""The video agent's run context (its settings are in :mod:`agent.settings`).

:class:`VideoContext` is the LangGraph run context of a video query: what :class:`~agent.context.Context`
is to an image query. It carries the LLM client, the :class:`~sam3_core.video.VideoEngine`, the video
(opened once for drawing keyframes), the query's :class:`~agent.masklets.MaskletStore` and the media
hooks (:data:`agent.media.video.VIDEO_MEDIA`) through which the shared graph offers the video tools and
builds the conversation. It is the peer of the image :class:`agent.context.Context`; both implement
:class:`agent.context.RunContext`. Like the image context, it lives for one query and is never checkpointed.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.context import ImageParts
from agent.keyframes import choose_keyframes
from agent.llm import LLMClient
from agent.masklets import MaskletStore, Track
from agent.settings import VIDEO_AGENT_DEFAULTS, AgentSettings, VideoSettings
from agent.state import State
from sam3_core.video import FrameSource, VideoEngine

if TYPE_CHECKING:
    from agent.media.base import Media

#: A video the agent accepts: a file, a folder of frames, or frames in memory (``(T, H, W, 3)`` uint8).
VideoInput = str | os.PathLike | np.ndarray | Sequence[np.ndarray]


def _video_media() -> Media:
    # Imported when a context is made: the video media imports the video tools, which import this module.
    from agent.media.video import VIDEO_MEDIA

    return VIDEO_MEDIA


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
    #: Limits and switches shared with the image agent (budgets, thresholds).
    settings: AgentSettings = VIDEO_AGENT_DEFAULTS
    #: The graph's hooks for videos (:data:`agent.media.video.VIDEO_MEDIA`).
    media: Media = field(default_factory=_video_media)
    #: How much of the video is tracked while exploring, keyframes shown, refinement.
    video_settings: VideoSettings = field(default_factory=VideoSettings)
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
        return choose_keyframes(presence, self.video_settings.keyframes)
