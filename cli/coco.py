"""One COCO "instances" document for a whole batch, for annotation tools (CVAT, Label Studio...) as pre-labels.

Layout (https://cocodataset.org/#format-data): ``images`` (id, file_name, width, height),
``categories`` (id, name; one per phrase or query, in the order first given), ``annotations`` (id,
image_id, category_id, ``segmentation`` as compressed RLE ``{"size": [H, W], "counts": str}``,
``bbox`` as pixel ``[x, y, width, height]``, ``area`` in pixels of the mask, ``score``, ``iscrowd`` 0).
Ids start at 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class CocoWriter:
    """Collects images and their masks; :meth:`document` returns the COCO dict."""

    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)

    def add_image(self, file_name: str, height: int, width: int) -> int:
        """Register an image; returns its id."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)})
        return image_id

    def category(self, name: str) -> int:
        """The id of category ``name`` (created on first use)."""
        return self.categories.setdefault(name, len(self.categories) + 1)

    def add_masks(self, image_id: int, name: str, masks: np.ndarray, scores, rles: list[dict]) -> None:
        """Add ``masks`` ((N, H, W) bool) of category ``name`` with their ``scores`` and COCO ``rles``."""
        from pycocotools import mask as mask_utils

        category_id = self.category(name)
        for mask, score, rle in zip(masks, scores, rles):
            coded = {"size": rle["size"], "counts": rle["counts"].encode("utf-8")}
            x, y, w, h = (float(v) for v in mask_utils.toBbox(coded))
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image_id, "category_id": category_id,
                "segmentation": rle, "area": int(np.count_nonzero(mask)),
                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                "score": round(float(score), 6), "iscrowd": 0,
            })

    def document(self) -> dict[str, Any]:
        return {
            "info": {"description": "SAM 3 pre-labels written by sam3-agent"},
            "images": self.images,
            "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in self.categories.items()],
            "annotations": self.annotations,
        }
