"""The admission budget: what one segmentation request may cost, checked before it reaches the worker.

The engine's model runs at a fixed input size, so a request's cost grows with what surrounds the model:
decoding the image, one full-resolution mask per instance found, and each output format rendered from
every mask. :func:`estimate_request_bytes` turns a request's shape (pixels, phrases, masks, formats)
into estimated peak bytes with per-pixel costs measured on CPU by ``python -m bench.engine_memory``
(peak RSS of each stage, tiny checkpoint, 4 and 16 MP images; see :data:`BYTES_PER_PIXEL`):

* before the worker, :func:`check_admission` refuses a request that would be over budget even if
  each phrase found a single instance (so a 64 MP image with three formats and many phrases never
  queues), and any count over its own limit;
* in the worker, once the model has scored the instances and before any full-size mask exists,
  :func:`max_masks_per_phrase` caps the masks a phrase may produce; a phrase over it fails only its own
  request with :class:`~sam3_core.errors.AdmissionError`.

Exemplar and refine boxes add no per-pixel term: they are clipped to the image first
(:mod:`sam3_core.geometry`), and the model pools each one from its fixed-size feature map, so a box
costs at most a constant; their number is capped by ``max_exemplar_boxes``.

Every refusal is an :class:`~sam3_core.errors.AdmissionError` whose ``limit`` names the
:class:`AdmissionLimits` field that was exceeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import AdmissionError, UsageError
from .images import DEFAULT_MAX_PIXELS

MIB = 1 << 20
GIB = 1 << 30

#: Peak bytes per pixel of each stage, measured with ``python -m bench.engine_memory --megapixels 4 16``
#: on a 2-core x86-64 CPU box (torch 2.14 CPU, tiny checkpoint): ``image`` is decoding (PNG to RGB
#: array and content key, 9.5-12.4 B/px) plus the processor's resize of the full-size array (6.8 B/px);
#: ``mask`` is one full-resolution boolean mask with its share of the upsampling scratch (~2 B/px at
#: 16 MP); each format is the extra peak of rendering one mask in it (rle 1.9, png 0.03-0.23, polygons
#: 0.12-0.48 B/px). Rounded up, so estimates err on the side of refusing.
BYTES_PER_PIXEL: dict[str, float] = {"image": 20.0, "mask": 2.0, "rle": 2.0, "png": 0.5, "polygons": 1.0}

#: The output formats the budget knows; any other name is a usage error.
FORMATS = ("rle", "png", "polygons")


@dataclass(frozen=True)
class AdmissionLimits:
    """Per-request budget of a :class:`~sam3_core.engine.Sam3Engine`.

    Attributes:
        max_pixels: most pixels in one image (``width * height``); see :data:`DEFAULT_MAX_PIXELS`.
        max_phrases: most phrases in one segment request.
        max_exemplar_boxes: most exemplar boxes in one segment request.
        max_request_bytes: most estimated peak memory of one request (image, masks and output formats),
            by :func:`estimate_request_bytes`.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_phrases: int = 32
    max_exemplar_boxes: int = 32
    max_request_bytes: int = 2 * GIB

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_phrases", "max_exemplar_boxes", "max_request_bytes"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"AdmissionLimits.{name} must be >= 1, got {getattr(self, name)}")


def bytes_per_mask_pixel(formats: Sequence[str] = ()) -> float:
    """Estimated peak bytes per pixel of one mask rendered in ``formats`` (``rle``, ``png``, ``polygons``)."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise UsageError(f"unknown output formats {unknown}; the budget knows {list(FORMATS)}")
    return BYTES_PER_PIXEL["mask"] + sum(BYTES_PER_PIXEL[name] for name in set(formats))


def estimate_request_bytes(pixels: int, masks: int, formats: Sequence[str] = ()) -> float:
    """Estimated peak bytes of a request on a ``pixels`` image producing ``masks`` masks in ``formats``."""
    return pixels * BYTES_PER_PIXEL["image"] + masks * pixels * bytes_per_mask_pixel(formats)


def check_admission(limits: AdmissionLimits, *, pixels: int, phrases: int, exemplar_boxes: int = 0,
                    formats: Sequence[str] = ()) -> float:
    """Refuse a request that is over a limit before it is queued; returns its least estimated bytes.

    Args:
        pixels: ``width * height`` of the image. phrases: phrases (a box-only prompt counts one).
        exemplar_boxes: exemplar boxes applied to every phrase (after clipping to the image).
        formats: output formats the caller will render for every mask.

    Raises:
        AdmissionError: ``limit`` names the exceeded :class:`AdmissionLimits` field.
    """
    for limit, value, text in (("max_pixels", pixels, "pixels"), ("max_phrases", phrases, "phrases"),
                               ("max_exemplar_boxes", exemplar_boxes, "exemplar boxes")):
        maximum = getattr(limits, limit)
        if value > maximum:
            raise AdmissionError(f"the request has {value} {text}, over the limit of {maximum} ({limit})",
                                 limit=limit, value=value, maximum=maximum)
    least = estimate_request_bytes(pixels, phrases, formats)  # at least one mask per phrase
    if least > limits.max_request_bytes:
        raise AdmissionError(
            f"the request would need about {least / MIB:.0f} MiB even with one mask per phrase "
            f"({pixels / 1e6:.1f} MP image, {phrases} phrases, formats {list(formats) or 'none'}), over the "
            f"per-request budget of {limits.max_request_bytes / MIB:.0f} MiB (max_request_bytes); send a "
            "smaller image, fewer phrases or fewer formats",
            limit="max_request_bytes", value=least, maximum=limits.max_request_bytes)
    return least


def max_masks_per_phrase(limits: AdmissionLimits, *, pixels: int, phrases: int, formats: Sequence[str] = ()) -> int:
    """Most masks each of ``phrases`` phrases may produce within ``max_request_bytes`` (the budget left
    after the image, split evenly between the phrases); at least 1 for an admitted request."""
    left = limits.max_request_bytes - pixels * BYTES_PER_PIXEL["image"]
    per_mask = max(1.0, pixels * bytes_per_mask_pixel(formats))
    return max(1, int(left // (per_mask * max(1, phrases))))


def too_many_masks(found: int, allowed: int, pixels: int) -> AdmissionError:
    """The error for a phrase that found more instances than its share of the budget allows."""
    return AdmissionError(
        f"a phrase found {found} instances; at {pixels / 1e6:.1f} MP this request may return at most {allowed} "
        "per phrase within the per-request memory budget (max_request_bytes); raise score_threshold, or send "
        "a smaller image, fewer phrases or fewer formats",
        limit="max_request_bytes", value=found, maximum=allowed)
