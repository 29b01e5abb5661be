"""Tiny SA-Co ground truth in the released formats, written to a temporary folder.

* :func:`write_saco_images` -- a Gold-style subset ``fg_food`` (three annotators, files
  ``gold_fg_food_merged_{a,b,c}_release_test.json``) and a Silver-style subset ``bdd``
  (``silver_bdd_merged_test.json``), images under ``<root>/images`` (``bdd`` under ``<root>/bdd_images``);
* :func:`write_saco_videos` -- ``saco_veval_toy_test.json`` with two 4-frame videos under
  ``<root>/media/<video>/<frame>.jpg`` and video-phrase pairs (positive and negative).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from eval.testing import HEIGHT, WIDTH, _image
from sam3_core.postprocess import masks_to_rle


def box_rle(x0: int, y0: int, x1: int, y1: int, height: int = HEIGHT, width: int = WIDTH) -> dict[str, Any]:
    """A compressed RLE of the rectangle ``[x0, x1) x [y0, y1)``."""
    mask = np.zeros((1, height, width), dtype=bool)
    mask[0, y0:y1, x0:x1] = True
    return masks_to_rle(mask)[0]


def _image_entry(pair_id: int, file_name: str, phrase: str, exhaustive: int = 1) -> dict[str, Any]:
    return {"id": pair_id, "file_name": file_name, "text_input": phrase, "width": WIDTH, "height": HEIGHT,
            "queried_category": "0", "is_instance_exhaustive": exhaustive, "is_pixel_exhaustive": exhaustive}


def _annotation(ann_id: int, pair_id: int, rle: dict[str, Any], crowd: int = 0) -> dict[str, Any]:
    return {"id": ann_id, "image_id": pair_id, "source": "manual", "area": 0.01, "bbox": [0.1, 0.1, 0.2, 0.2],
            "segmentation": rle, "category_id": 1, "iscrowd": crowd}


#: Gold-style pairs: (id, image, phrase, boxes per annotator a/b/c, exhaustive)
GOLD_PAIRS = [
    (10, "1/img_a.jpg", "chili", [[(4, 4, 20, 20)], [(4, 4, 20, 20)], [(4, 4, 22, 22)]], 1),
    (11, "1/img_a.jpg", "the fish ball", [[], [], []], 1),  # negative in every annotation
    (12, "1/img_b.jpg", "bowl", [[(30, 10, 60, 40), (0, 30, 12, 46)], [(30, 10, 60, 40)], [(30, 10, 60, 40)]], 1),
    (13, "1/img_b.jpg", "spoon", [[(1, 1, 5, 5)], [], [(1, 1, 5, 5)]], 1),  # annotators disagree on presence
    (14, "1/img_c.jpg", "plate", [[(10, 10, 50, 40)], [(10, 10, 50, 40)], [(10, 10, 50, 40)]], 0),  # not scored
]
#: Silver-style pairs: (id, image, phrase, boxes, crowd flags)
SILVER_PAIRS = [
    (1, "street_1.jpg", "car", [(2, 2, 30, 20), (34, 24, 62, 46)], [0, 0]),
    (2, "street_1.jpg", "traffic light", [], []),
    (3, "street_2.jpg", "person", [(5, 5, 15, 40), (20, 5, 60, 45)], [0, 1]),  # one crowd segment
]


def write_saco_images(root: Path) -> Path:
    """The two subsets of this module's docstring; returns ``root`` (the ``--data`` folder)."""
    root.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(sorted({p[1] for p in GOLD_PAIRS})):
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        _image(400 + seed).save(root / "images" / name, quality=95)
    for index, letter in enumerate("abc"):
        images = [_image_entry(pid, name, phrase, ex) for pid, name, phrase, _, ex in GOLD_PAIRS]
        anns = [_annotation(len(images) * 100 + k, pid, box_rle(*box))
                for k, (pid, _, _, boxes, _) in enumerate(GOLD_PAIRS) for box in boxes[index]]
        anns = [{**a, "id": i + 1} for i, a in enumerate(anns)]
        document = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}
        (root / f"gold_fg_food_merged_{letter}_release_test.json").write_text(json.dumps(document))
    (root / "bdd_images").mkdir(exist_ok=True)
    for seed, name in enumerate(sorted({p[1] for p in SILVER_PAIRS})):
        _image(500 + seed).save(root / "bdd_images" / name, quality=95)
    images = [_image_entry(pid, name, phrase) for pid, name, phrase, _, _ in SILVER_PAIRS]
    anns = [_annotation(0, pid, box_rle(*box), crowd) for pid, _, _, boxes, flags in SILVER_PAIRS
            for box, crowd in zip(boxes, flags, strict=True)]
    anns = [{**a, "id": i + 1} for i, a in enumerate(anns)]
    document = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}
    (root / "silver_bdd_merged_test.json").write_text(json.dumps(document))
    return root


VIDEO_FRAMES = 4
#: (video id, name); pairs: (video id, category id, phrase, masklets as per-frame boxes or None)
VIDEOS = [(0, "vid_a"), (1, "vid_b")]
VIDEO_PAIRS = [
    (0, 5, "a dog", [[(4, 4, 20, 20), (6, 4, 22, 20), None, (10, 4, 26, 20)]]),
    (0, 6, "a cat", []),
    (1, 5, "a dog", [[(30, 10, 50, 30)] * VIDEO_FRAMES, [None, (0, 30, 10, 46), (0, 30, 10, 46), None]]),
]


def write_saco_videos(root: Path) -> Path:
    """SA-Co/VEval-style ground truth and frames; returns ``root`` (media under ``root / "media"``)."""
    root.mkdir(parents=True, exist_ok=True)
    videos = []
    for video_id, name in VIDEOS:
        names = [f"{name}/{4 * t:05d}.jpg" for t in range(VIDEO_FRAMES)]
        for t, file_name in enumerate(names):
            (root / "media" / file_name).parent.mkdir(parents=True, exist_ok=True)
            _image(600 + 10 * video_id + min(t, 1)).save(root / "media" / file_name, quality=95)
        videos.append({"id": video_id, "video_name": name, "file_names": names, "height": HEIGHT, "width": WIDTH,
                       "length": VIDEO_FRAMES})
    annotations, pairs = [], []
    for video_id, category, phrase, masklets in VIDEO_PAIRS:
        pairs.append({"id": len(pairs) + 1, "video_id": video_id, "category_id": category, "noun_phrase": phrase,
                      "num_masklets": len(masklets)})
        for boxes in masklets:
            annotations.append({
                "id": len(annotations) + 1, "video_id": video_id, "category_id": category, "iscrowd": 0,
                "height": HEIGHT, "width": WIDTH, "noun_phrase": phrase,
                "segmentations": [box_rle(*b) if b else None for b in boxes],
                "bboxes": [[b[0], b[1], b[2] - b[0], b[3] - b[1]] if b else None for b in boxes],
                "areas": [(b[2] - b[0]) * (b[3] - b[1]) if b else None for b in boxes]})
    categories = [{"id": 5, "name": "a dog"}, {"id": 6, "name": "a cat"}]
    document = {"info": {"description": "toy"}, "videos": videos, "annotations": annotations,
                "categories": categories, "video_np_pairs": pairs}
    (root / "saco_veval_toy_test.json").write_text(json.dumps(document))
    return root
