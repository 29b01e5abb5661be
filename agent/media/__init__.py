"""The media the agent works on, as peers behind one protocol (:class:`Media`).

* :mod:`agent.media.base` -- the :class:`Media` protocol the shared graph (:mod:`agent.graph`) calls.
* :mod:`agent.media.image` -- :data:`IMAGE_MEDIA`: the image tools, the raw image, one overlay of masks.
* :mod:`agent.media.video` -- :data:`VIDEO_MEDIA`: the video tools, sampled frames, masklet keyframes.

The submodules are imported on first use (they import the tools, and the tools import the agent's
state and contexts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.media.base import Media

if TYPE_CHECKING:
    from agent.media.image import IMAGE_MEDIA, ImageMedia
    from agent.media.video import VIDEO_MEDIA, VideoMedia

__all__ = ["IMAGE_MEDIA", "VIDEO_MEDIA", "ImageMedia", "Media", "VideoMedia"]


def __getattr__(name: str) -> Any:
    if name in ("IMAGE_MEDIA", "ImageMedia"):
        from agent.media import image

        return getattr(image, name)
    if name in ("VIDEO_MEDIA", "VideoMedia"):
        from agent.media import video

        return getattr(video, name)
    raise AttributeError(f"module 'agent.media' has no attribute {name!r}")
