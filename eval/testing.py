"""Tiny synthetic benchmarks in the real dataset formats, and a scripted LLM that plays the agent.

For tests and benchmarks of the evaluation (the project's own and users'); no pytest, no network.

* :func:`write_reasonseg` -- ``<root>/val`` with four labelme-style images (two short, two long
  queries; one with an ``ignore`` shape, one with a ``flag`` shape, one with an empty target), or
  ``copies`` times as many (other images, same annotations) for benchmarks;
* :func:`write_refcoco` -- ``<root>/refcoco/refs(unc).p``, ``instances.json`` and two COCO images;
* :func:`write_omnilabel` -- ``<root>/val.json`` and two images (categories and free-form descriptions);
* :class:`AgentScript` -- a responder for :class:`agent.testing.ScriptedLLM` or
  :class:`agent.testing.ScriptedModel` that answers every query the same way (``segment_phrase`` with the
  query's last word, then ``select_masks_and_return`` with every mask found, or ``report_no_mask``), by the
  request's content so queries can run concurrently; chosen queries get HTTP 500 instead.
"""

from __future__ import annotations

import json
import pickle
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agent.testing import Reply, message_texts

HEIGHT, WIDTH = 48, 64


def _image(seed: int) -> Image.Image:
    """A random blocky RGB image (structure, so SAM 3 features differ between images)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(HEIGHT // 8 + 1, WIDTH // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:HEIGHT, :WIDTH])


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


REASONSEG_SAMPLES: dict[str, dict[str, Any]] = {
    "a_kitchen": {"text": ["the cup"], "is_sentence": False,
                  "shapes": [{"label": "target", "points": _rect(4, 4, 30, 30)},
                             {"label": "ignore", "points": _rect(20, 20, 40, 40)}]},
    "b_street": {"text": ["What would you sit on while waiting for the bus?"], "is_sentence": True,
                 "shapes": [{"label": "target", "points": _rect(10, 5, 60, 45)},
                            {"label": "flag", "points": _rect(0, 0, 63, 47)}]},
    "c_park": {"text": ["the dog"], "is_sentence": False,
               "shapes": [{"label": "target", "points": [[5, 40], [30, 8], [55, 40]]}]},
    "d_room": {"text": ["Which object here could show you the time?"], "is_sentence": True, "shapes": []},
}


def write_reasonseg(root: Path, split: str = "val", copies: int = 1) -> Path:
    """A ReasonSeg folder with the :data:`REASONSEG_SAMPLES`; returns ``root``.

    ``copies`` > 1 writes each sample that many times (``a_kitchen_000``, ``a_kitchen_001``, ...), each
    copy with its own random image.
    """
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    for copy in range(copies):
        for seed, (name, anno) in enumerate(REASONSEG_SAMPLES.items()):
            stem = f"{name}_{copy:03d}" if copies > 1 else name
            _image(100 + seed + 1000 * copy).save(folder / f"{stem}.jpg", quality=95)
            (folder / f"{stem}.json").write_text(json.dumps(anno))
    return root


def write_refcoco(root: Path, variant: str = "refcoco", split_by: str = "unc") -> Path:
    """A RefCOCO-style folder: two images, three val refs with four sentences in all, one train ref."""
    (root / variant).mkdir(parents=True, exist_ok=True)
    images = root / "images/mscoco/images/train2014"
    images.mkdir(parents=True, exist_ok=True)
    for image_id in (1, 2):
        _image(200 + image_id).save(images / f"COCO_train2014_{image_id:012d}.jpg", quality=95)

    def ref(ref_id: int, ann_id: int, image_id: int, split: str, sentences: list[str]) -> dict[str, Any]:
        sents = [{"sent_id": 10 * ref_id + i, "sent": s, "raw": s, "tokens": s.split()}
                 for i, s in enumerate(sentences)]
        return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split, "category_id": 1,
                "sentences": sents}

    refs = [ref(1, 11, 1, "val", ["Man on the left", "left guy"]), ref(2, 12, 1, "val", ["the red car"]),
            ref(3, 21, 2, "val", ["dog in the middle"]), ref(4, 21, 2, "train", ["a dog"])]
    with (root / variant / f"refs({split_by}).p").open("wb") as handle:
        pickle.dump(refs, handle)
    instances = {
        "images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": HEIGHT, "width": WIDTH}
                   for i in (1, 2)],
        "annotations": [
            {"id": 11, "image_id": 1, "segmentation": [[2, 2, 30, 2, 30, 40, 2, 40]], "iscrowd": 0},
            {"id": 12, "image_id": 1, "segmentation": [[34, 10, 60, 10, 60, 30, 34, 30]], "iscrowd": 0},
            {"id": 21, "image_id": 2, "segmentation": [[10, 10, 50, 10, 50, 44, 10, 44]], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (root / variant / "instances.json").write_text(json.dumps(instances))
    return root


def omnilabel_gt() -> dict[str, Any]:
    """A two-image OmniLabel ground truth with categories, positive and negative descriptions."""
    def descr(descr_id: int, text: str, kind: str, image_ids: list[int]) -> dict[str, Any]:
        return {"id": descr_id, "text": text, "image_ids": image_ids, "anno_info": {"type": kind}}

    return {
        "info": {"name": "tiny omnilabel"},
        "images": [{"id": 5, "file_name": "coco/5.jpg"}, {"id": 9, "file_name": "o365/9.jpg"}],
        "descriptions": [
            descr(1, "dog", "object_category", [5, 9]),
            descr(2, "the dog lying on the left", "object_description", [5]),
            descr(3, "cat", "object_category", [9]),
            descr(4, "a purple umbrella that nobody holds", "object_description", [9]),
        ],
        "annotations": [
            {"id": 1, "image_id": 5, "bbox": [4, 6, 24, 30], "description_ids": [1, 2]},
            {"id": 2, "image_id": 5, "bbox": [36, 8, 20, 20], "description_ids": [1]},
            {"id": 3, "image_id": 9, "bbox": [10, 10, 30, 30], "description_ids": [3]},
        ],
    }


def write_omnilabel(root: Path, split: str = "val") -> Path:
    """``<root>/<split>.json`` and its images under ``root``; returns ``root``."""
    gt = omnilabel_gt()
    for index, image in enumerate(gt["images"]):
        path = root / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        _image(300 + index).save(path, quality=95)
    (root / f"{split}.json").write_text(json.dumps(gt))
    return root


def tool_call(name: str, **arguments: Any) -> Reply:
    """A text-protocol tool call reply (:meth:`agent.testing.Reply.text_call`)."""
    return Reply.text_call(name, **arguments)


class AgentScript:
    """A deterministic stand-in for the MLLM, answering each request from its content.

    ``fail`` holds queries whose requests get HTTP 500, ``slow`` queries whose replies come only after
    ``slow_s`` seconds (past the client's timeout). ``delay_s`` keeps each request open a little, so
    :attr:`max_in_flight` shows whether queries really ran concurrently.
    """

    def __init__(self, fail: set[str] | None = None, slow: set[str] | None = None, slow_s: float = 5.0,
                 delay_s: float = 0.02) -> None:
        self.fail, self.slow, self.slow_s = set(fail or ()), set(slow or ()), slow_s
        self.delay_s = delay_s
        self.queries: list[str] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            time.sleep(self.delay_s)
            return self._answer(body)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, body: dict[str, Any]) -> Reply:
        opening = message_texts(body, "user")[0]
        query = re.search(r"^> (.*)$", opening, re.MULTILINE).group(1).strip()
        if query in self.fail:
            return Reply.error(500, "scripted failure")
        if query in self.slow:
            return Reply.text("too late", delay_s=self.slow_s)
        if not any(m.get("role") == "assistant" for m in body["messages"]):
            with self._lock:
                self.queries.append(query)
            return tool_call("segment_phrase", text_prompt=query.rstrip("?.").split()[-1])
        found = re.search(r"new mask\(s\): ids \[([\d, ]+)\]", message_texts(body, "user")[-1])
        if found is None:
            return tool_call("report_no_mask")
        return tool_call("select_masks_and_return", mask_ids=[int(i) for i in found.group(1).split(",")])
