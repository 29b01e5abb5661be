"""Run contexts: what every graph node gets as ``runtime.context`` (never checkpointed).

:class:`RunContext` is what the shared graph (:mod:`agent.graph`) reads from a run context, whatever
the medium: the LLM client, the :class:`~agent.settings.AgentSettings`, the medium's hooks
(:class:`agent.media.Media`) and a per-query cache. Two run contexts implement it, peers of each other:

* :class:`Context` -- an image query: the SAM 3 image engine and the loaded image; its media hooks are
  :data:`agent.media.image.IMAGE_MEDIA`.
* :class:`agent.video_context.VideoContext` -- a video query: the video engine, the video and its
  masklets; its media hooks are :data:`agent.media.video.VIDEO_MEDIA`.

:class:`ImageParts` (images for the LLM within the pixel budget, cached per query) is shared by both.
This module imports nothing from :mod:`tools`, so the tools may depend on it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from agent.image_urls import ImageLike, image_part
from agent.llm import LLMClient
from agent.settings import AgentSettings
from sam3_core.engine import Sam3Engine
from sam3_core.images import LoadedImage

if TYPE_CHECKING:
    from agent.media.base import Media


class RunContext(Protocol):
    """What the shared graph reads from a run context (image :class:`Context` or a video one)."""

    #: The multimodal LLM (its config picks the tool protocol).
    llm: LLMClient
    #: Limits and switches shared by every medium.
    settings: AgentSettings
    #: The medium's hooks: tools offered, conversation opening, images shown with the anchor, thread key.
    media: Media
    #: Per-query cache of encoded images and prepared work.
    cache: dict[Hashable, Any]


class ImageParts:
    """Image parts within the run's pixel budget, shared by the image and the video run contexts.

    The class using it provides ``llm`` (an :class:`LLMClient`), ``settings`` (an :class:`AgentSettings`)
    and ``cache`` (a per-query dict).
    """

    llm: LLMClient
    settings: AgentSettings
    cache: dict[Hashable, Any]

    @property
    def pixel_budget(self) -> int | None:
        """Most pixels of each image sent to the LLM (None: no limit)."""
        return self.settings.image_max_pixels or self.llm.config.image_max_pixels

    def image_part(self, image: ImageLike) -> dict[str, Any]:
        """An OpenAI ``image_url`` part for ``image`` within the pixel budget of this run."""
        return image_part(image, self.pixel_budget, self.llm.config.image_format)

    def cached_part(self, key: Hashable, make: Callable[[], ImageLike]) -> dict[str, Any]:
        """:meth:`image_part` of ``make()``, made once per ``key`` for the life of this context."""
        part = self.cache.get(key)
        if part is None:
            part = self.cache[key] = self.image_part(make())
        return part


def _image_media() -> Media:
    # Imported when a context is made, not when this module is: the image media imports the image
    # tools, and the tools import this module.
    from agent.media.image import IMAGE_MEDIA

    return IMAGE_MEDIA


@dataclass(frozen=True)
class Context(ImageParts):
    """The run context of an image query.

    A context lives for one query (:func:`agent.runner.run_agent` makes a new one each time), so its
    :attr:`cache` holds what does not change during the query: the raw image's part
    (:meth:`raw_image_part`), overlays keyed by what they show (:meth:`cached_part`), and verification
    questions prepared in the background (:func:`tools.segmentation.prepare_verification`).
    """

    #: The multimodal LLM (its config picks the tool protocol).
    llm: LLMClient
    #: The SAM 3 engine.
    engine: Sam3Engine
    #: The image of the thread; its key must match ``State.image_key``.
    image: LoadedImage
    #: Limits and switches.
    settings: AgentSettings = field(default_factory=AgentSettings)
    #: The medium's hooks for the graph (:data:`agent.media.image.IMAGE_MEDIA`).
    media: Media = field(default_factory=_image_media)
    #: Per-query cache (see above); keys are tuples whose first item says what they hold.
    cache: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def raw_image_part(self) -> dict[str, Any]:
        """The image part of the run's image itself (encoded once per context)."""
        return self.cached_part(("raw", self.image.key), lambda: self.image.pixels)
