"""Mask colours: a fixed palette indexed by mask id, and label text colours chosen for contrast (WCAG).

The same id always gets the same colour (:func:`color_for_id`), so an object keeps its colour in every render of a
run. :mod:`sam3_core.drawing` re-exports these names.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RGB = tuple[int, int, int]

#: Mask colours, indexed by ``mask_id % len(PALETTE)``. Neighbouring entries differ strongly in hue,
#: because consecutive ids are the ones most often shown together.
PALETTE: tuple[RGB, ...] = (
    (242, 36, 36), (48, 191, 48), (36, 122, 242), (255, 194, 13), (179, 65, 217),
    (20, 204, 189), (255, 121, 25), (255, 89, 172), (138, 230, 46), (138, 115, 255),
    (153, 31, 41), (97, 242, 170), (7, 96, 140), (153, 153, 31), (140, 14, 130),
    (255, 169, 140), (21, 31, 140), (94, 140, 70), (140, 236, 255), (210, 200, 255),
)  # fmt: skip

WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)


def color_for_id(mask_id: int) -> RGB:
    """The palette colour of ``mask_id``; the same id always gets the same colour."""
    return PALETTE[int(mask_id) % len(PALETTE)]


def relative_luminance(color: RGB) -> float:
    """WCAG relative luminance of an sRGB colour, in ``[0, 1]``."""
    channels = np.asarray(color, dtype=np.float64) / 255.0
    linear = np.where(channels <= 0.04045, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return float(linear @ np.array([0.2126, 0.7152, 0.0722]))


def contrast_ratio(first: RGB, second: RGB) -> float:
    """WCAG contrast ratio between two colours, from 1 (identical) to 21 (black on white)."""
    high, low = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@lru_cache(maxsize=256)
def text_color_for(background: RGB) -> RGB:
    """White or black, whichever contrasts more with ``background`` (always a ratio of at least 4.5)."""
    if contrast_ratio(WHITE, background) >= contrast_ratio(BLACK, background):
        return WHITE
    return BLACK
