"""Batch use of ``segment-phrase`` and ``segment``: folders, globs, one output per image, a summary and one
COCO instances file that pycocotools reads back; a bad image fails only itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.testing import Reply, ScriptedLLM
from cli.main import main
from sam3_core.postprocess import rle_to_mask


def save_image(path: Path, seed: int, size: tuple[int, int] = (60, 80)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def batch(tmp_path) -> Path:
    """imgs/a.png, imgs/b.jpg, imgs/broken.png (not an image), more/a.png (same stem as imgs/a.png)."""
    save_image(tmp_path / "imgs" / "a.png", 1)
    save_image(tmp_path / "imgs" / "b.jpg", 2, size=(40, 50))
    (tmp_path / "imgs" / "broken.png").write_bytes(b"this is not a png")
    save_image(tmp_path / "more" / "a.png", 3)
    return tmp_path


def test_segment_phrase_batch_writes_per_image_json_summary_and_coco(batch, tiny_checkpoint, caplog):
    out = batch / "out"
    status = main(["segment-phrase", str(batch / "imgs"), str(batch / "more" / "*.png"), "-p", "cat", "-p", "red car",
                   "--model", tiny_checkpoint, "--threshold", "0.0", "--out", str(out), "--overlay", "--no-progress"])
    assert status == 1  # broken.png failed, the others did not
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "a_2.json", "b.json", "coco.json", "summary.json"]
    assert sorted(p.name for p in out.glob("*.overlay.png")) == ["a.overlay.png", "a_2.overlay.png", "b.overlay.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 1
    failed = [s for s in summary["images"] if "error" in s]
    assert len(failed) == 1 and failed[0]["image"].endswith("broken.png")
    assert "broken.png" in caplog.text and "1 failed" in caplog.text

    coco = json.loads((out / "coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["cat", "red car"]
    assert [(i["file_name"], i["height"], i["width"]) for i in coco["images"]] == [
        ("a.png", 60, 80), ("b.jpg", 40, 50), ("a.png", 60, 80)]
    per_image = json.loads((out / "b.json").read_text())
    expected = sum(len(r["instances"]) for r in per_image["results"])
    b_annotations = [a for a in coco["annotations"] if a["image_id"] == 2]
    assert expected > 0 and len(b_annotations) == expected
    for annotation in coco["annotations"]:
        mask = rle_to_mask(annotation["segmentation"])
        assert annotation["area"] == int(mask.sum())
        x, y, w, h = annotation["bbox"]
        if mask.any():  # the box is the mask's extent, in x, y, width, height
            ys, xs = np.nonzero(mask)
            assert (x, y, w, h) == pytest.approx((xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                                  ys.max() - ys.min() + 1), abs=0.01)
        assert 0.0 <= annotation["score"] <= 1.0 and annotation["iscrowd"] == 0


def test_coco_output_loads_in_pycocotools(batch, tiny_checkpoint):
    from pycocotools.coco import COCO

    out = batch / "one.json"
    coco_path = batch / "pre-labels.json"
    assert main(["segment-phrase", str(batch / "imgs" / "a.png"), "-p", "cat", "--model", tiny_checkpoint,
                 "--threshold", "0.0", "--out", str(out), "--coco", str(coco_path)]) == 0
    dataset = COCO(str(coco_path))
    annotations = dataset.loadAnns(dataset.getAnnIds(imgIds=[1]))
    assert annotations and all(dataset.annToMask(a).shape == (60, 80) for a in annotations)


def test_an_image_is_never_taken_for_a_phrase(batch, caplog):
    first, second = str(batch / "imgs" / "a.png"), str(batch / "more" / "a.png")
    assert main(["segment-phrase", first, second, "dog", "--model", "no/such-model"]) == 2
    assert "looks like an image, not a phrase" in caplog.text and "-p/--phrase" in caplog.text
    assert main(["segment-phrase", first, "photo.jpg", "--model", "no/such-model"]) == 2  # image-like, missing


def test_segment_agent_batch_with_coco(batch, tiny_checkpoint):
    segment = json.dumps({"name": "segment_phrase", "arguments": {"text_prompt": "cup"}})
    select = json.dumps({"name": "select_masks_and_return", "arguments": {"mask_ids": [1]}})
    script = [Reply.text(f"<tool_call>{segment}</tool_call>"), Reply.text(f"<tool_call>{select}</tool_call>")] * 2
    out = batch / "agent"
    with ScriptedLLM(script) as server:
        status = main(["segment", str(batch / "imgs" / "a.png"), str(batch / "imgs" / "b.jpg"), "-q", "the cup",
                       "--model", tiny_checkpoint, "--llm-url", server.base_url, "--llm-model", server.model,
                       "--threshold", "0.0", "--no-verify", "--out", str(out), "--no-progress"])
    assert status == 0
    assert (out / "a" / "result.json").is_file() and (out / "b" / "mask.png").is_file()
    coco = json.loads((out / "coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["the cup"]
    assert len(coco["images"]) == 2 and len(coco["annotations"]) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["images"]] == ["answered", "answered"]
