"""SAM 3 on videos: phrases tracked with the detector + tracker, objects added or refined with clicks/boxes.

Main entry point: :class:`~sam3_core.video.engine.VideoEngine`. Outputs: YouTube-VIS-style JSON and
overlay videos (:mod:`sam3_core.video.outputs`).
"""

from __future__ import annotations

from .engine import ObjectUpdate, SessionInfo, VideoEngine
from .frames import FrameSource, open_video
from .options import VideoOptions
from .results import FrameResult

__all__ = ["FrameResult", "FrameSource", "ObjectUpdate", "SessionInfo", "VideoEngine", "VideoOptions", "open_video"]
