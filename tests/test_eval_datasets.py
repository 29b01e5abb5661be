"""Tests for the benchmark loaders (ReasonSeg, RefCOCO family, OmniLabel) on tiny synthetic datasets."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from eval.datasets.omnilabel import load_omnilabel
from eval.datasets.polygon import polygon_coverage
from eval.datasets.reasonseg import image_size, load_reasonseg, rasterize_shapes
from eval.datasets.refcoco import load_refcoco, unique_image_ids
from sam3_core.errors import InputError


def _grid(rows: list[str]) -> np.ndarray:
    return np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)


def _rect(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# --------------------------------------------------------------------------------------------
# Polygon rasterization: expected masks were produced by cv2.polylines + cv2.fillPoly with
# opencv-python 4.8.0.74 (the version LISA pins), on int32-truncated vertices.

CV2_CASES = {
    "triangle": (
        [[1.7, 0.2], [8.9, 3.5], [2.2, 6.9]],
        [
            ".##.......",
            ".####.....",
            ".######...",
            ".########.",
            "..######..",
            "..####....",
            "..##......",
            "..........",
        ],
    ),
    "clipped": (
        [[-3, 2], [6, -4], [12, 5], [4, 9]],
        [
            "#########.",
            "#########.",
            "##########",
            "##########",
            "##########",
            "##########",
            ".#########",
            "..#######.",
        ],
    ),
    "concave": (
        [[0, 0], [9, 0], [9, 7], [5, 3], [0, 7]],
        [
            "##########",
            "##########",
            "##########",
            "##########",
            "#####.####",
            "####...###",
            "##......##",
            "#........#",
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(CV2_CASES))
def test_polygon_coverage_matches_opencv(name: str) -> None:
    points, rows = CV2_CASES[name]
    np.testing.assert_array_equal(polygon_coverage(points, 8, 10), _grid(rows))


def test_rectangle_covers_its_border_inclusively() -> None:
    cover = polygon_coverage(_rect(1, 1, 8, 6), 8, 10)
    assert cover.sum() == 8 * 6
    assert cover[1:7, 1:9].all()


# --------------------------------------------------------------------------------------------
# ReasonSeg

W, H = 10, 8
BIG = _rect(1, 1, 8, 6)  # 8 x 6 = 48 pixels
MIDDLE = _rect(3, 2, 5, 4)  # 3 x 3 = 9 pixels, inside BIG
SMALL = _rect(4, 3, 5, 4)  # 2 x 2 = 4 pixels, inside MIDDLE


def _reasonseg_shapes() -> list[dict[str, Any]]:
    # File order is deliberately not size order: the smallest target comes first.
    return [
        {"label": "target", "points": SMALL, "shape_type": "polygon"},
        {"label": "Ignore", "points": MIDDLE, "shape_type": "polygon"},
        {"label": "FLAG", "points": _rect(0, 0, 9, 7), "shape_type": "polygon"},
        {"label": "target", "points": BIG, "shape_type": "polygon"},
    ]


def _write_reasonseg(root: Path, split: str = "val", **overrides: Any) -> Path:
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (W, H), (40, 80, 120)).save(folder / "b_img.jpg")
    Image.new("RGB", (W, H), (10, 10, 10)).save(folder / "a_img.jpg")
    anno = {"text": ["  what keeps food cold?  ", "the fridge"], "is_sentence": False, "shapes": _reasonseg_shapes()}
    anno.update(overrides)
    (folder / "b_img.json").write_text(json.dumps(anno))
    (folder / "a_img.json").write_text(json.dumps({"text": ["A long question."], "is_sentence": True, "shapes": []}))
    return folder


def test_reasonseg_mask_sorting_ignore_and_flag(tmp_path: Path) -> None:
    _write_reasonseg(tmp_path)
    samples = load_reasonseg(tmp_path, "val")
    assert [s.id for s in samples] == ["a_img", "b_img"]
    sample = samples[1]
    assert sample.query == "what keeps food cold?"
    assert sample.queries == ("what keeps food cold?", "the fridge")
    assert sample.is_sentence is False and sample.group == "short"
    assert samples[0].group == "long"

    target = sample.load_target()
    expected_mask = np.zeros((H, W), dtype=bool)
    expected_mask[1:7, 1:9] = True  # BIG
    expected_mask[2:5, 3:6] = False  # MIDDLE is ignore, drawn after BIG
    expected_mask[3:5, 4:6] = True  # SMALL drawn last, wins over MIDDLE
    expected_ignore = np.zeros((H, W), dtype=bool)
    expected_ignore[2:5, 3:6] = True
    expected_ignore[3:5, 4:6] = False
    np.testing.assert_array_equal(target.mask, expected_mask)
    np.testing.assert_array_equal(target.ignore, expected_ignore)
    assert target.mask.sum() == 48 - 9 + 4 and target.ignore.sum() == 9 - 4
    assert not target.mask[0].any() and not target.mask[:, 0].any()  # the "flag" shape was skipped


def test_reasonseg_label_map_values() -> None:
    labels = rasterize_shapes(_reasonseg_shapes(), H, W)
    assert set(np.unique(labels).tolist()) == {0, 1, 255}
    assert labels[2, 3] == 255 and labels[3, 4] == 1 and labels[0, 0] == 0


def test_reasonseg_empty_target_image(tmp_path: Path) -> None:
    _write_reasonseg(tmp_path)
    target = load_reasonseg(tmp_path, "val")[0].load_target()
    assert target.mask.shape == (H, W) and not target.mask.any() and not target.ignore.any()


def test_reasonseg_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown ReasonSeg split"):
        load_reasonseg(tmp_path, "dev")
    with pytest.raises(InputError, match="test folder not found"):
        load_reasonseg(tmp_path, "test")
    folder = _write_reasonseg(tmp_path)
    (folder / "a_img.json").unlink()
    with pytest.raises(InputError, match=r"a_img\.jpg"):
        load_reasonseg(tmp_path, "val")


def test_reasonseg_missing_field_is_reported(tmp_path: Path) -> None:
    folder = _write_reasonseg(tmp_path)
    (folder / "b_img.json").write_text(json.dumps({"text": ["q"], "shapes": []}))
    with pytest.raises(InputError, match=r"b_img\.json: missing field 'is_sentence'"):
        load_reasonseg(tmp_path, "val")
    (folder / "b_img.json").write_text(json.dumps({"text": [], "is_sentence": False, "shapes": []}))
    with pytest.raises(InputError, match="'text' must be a non-empty list"):
        load_reasonseg(tmp_path, "val")


def test_image_size_follows_exif_rotation(tmp_path: Path) -> None:
    img = Image.new("RGB", (W, H))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    img.save(tmp_path / "plain.jpg")
    assert image_size(tmp_path / "rot.jpg") == (W, H)
    assert image_size(tmp_path / "plain.jpg") == (H, W)


# --------------------------------------------------------------------------------------------
# RefCOCO family

IMG_H, IMG_W = 6, 8


def _write_refcoco(root: Path, dataset: str = "refcoco", split_by: str = "unc") -> None:
    (root / dataset).mkdir(parents=True)
    (root / "images/mscoco/images/train2014").mkdir(parents=True)
    refs = [
        {
            "ref_id": 0, "ann_id": 10, "image_id": 1, "split": "val", "category_id": 1,
            "sentences": [
                {"sent_id": 0, "sent": " Left Man ", "raw": "Left man", "tokens": ["left", "man"]},
                {"sent_id": 1, "sent": "guy on left", "raw": "guy on left", "tokens": ["guy", "on", "left"]},
            ],
        },
        {
            "ref_id": 1, "ann_id": [10, 11], "image_id": 1, "split": "val", "category_id": 1,
            "sentences": [{"sent_id": 2, "sent": "both of them", "raw": "", "tokens": []}],
        },
        {
            "ref_id": 2, "ann_id": 11, "image_id": 1, "split": "testA", "category_id": 1,
            "sentences": [{"sent_id": 3, "sent": "right one", "raw": "", "tokens": []}],
        },
        {
            "ref_id": 3, "ann_id": 11, "image_id": 1, "split": "train", "category_id": 1,
            "sentences": [{"sent_id": 4, "sent": "train only", "raw": "", "tokens": []}],
        },
    ]  # fmt: skip
    with (root / dataset / f"refs({split_by}).p").open("wb") as fh:
        pickle.dump(refs, fh)
    instances = {
        "images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": IMG_H, "width": IMG_W}],
        "annotations": [
            # Polygon of the 3 x 2 rectangle x in [1, 4), y in [1, 3): pixels x 1..3, y 1..2.
            {"id": 10, "image_id": 1, "segmentation": [[1, 1, 4, 1, 4, 3, 1, 3]], "iscrowd": 0},
            # Uncompressed (column-major) RLE: 8 zeros, 4 ones (column x=1, rows 2..5), 36 zeros.
            {"id": 11, "image_id": 1, "segmentation": {"size": [IMG_H, IMG_W], "counts": [8, 4, 36]}, "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    (root / dataset / "instances.json").write_text(json.dumps(instances))


def _expected_polygon() -> np.ndarray:
    mask = np.zeros((IMG_H, IMG_W), dtype=bool)
    mask[1:3, 1:4] = True
    return mask


def _expected_rle() -> np.ndarray:
    mask = np.zeros((IMG_H, IMG_W), dtype=bool)
    mask[2:6, 1] = True
    return mask


def test_refcoco_one_sample_per_sentence_with_union_targets(tmp_path: Path) -> None:
    _write_refcoco(tmp_path)
    samples = load_refcoco(tmp_path, "refcoco", "unc", "val")
    assert [s.id for s in samples] == ["0-0", "0-1", "1-2"]
    assert [s.query for s in samples] == ["left man", "guy on left", "both of them"]
    expected_path = tmp_path / "images/mscoco/images/train2014/COCO_train2014_000000000001.jpg"
    assert samples[0].image_path == expected_path
    np.testing.assert_array_equal(samples[0].load_target(), _expected_polygon())
    np.testing.assert_array_equal(samples[2].load_target(), _expected_polygon() | _expected_rle())
    assert unique_image_ids(samples) == [1]


def test_refcoco_split_selection(tmp_path: Path) -> None:
    _write_refcoco(tmp_path)
    test_a = load_refcoco(tmp_path, "refcoco", "unc", "testA")
    assert [s.query for s in test_a] == ["right one"]
    np.testing.assert_array_equal(test_a[0].load_target(), _expected_rle())
    with pytest.raises(InputError, match="no refs with split 'testB'"):
        load_refcoco(tmp_path, "refcoco", "unc", "testB")


def test_refcoco_bad_names_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown dataset"):
        load_refcoco(tmp_path, "refclef", "unc", "val")
    with pytest.raises(InputError, match="no split scheme 'umd'"):
        load_refcoco(tmp_path, "refcoco+", "umd", "val")
    with pytest.raises(InputError, match="no split 'test'"):
        load_refcoco(tmp_path, "refcoco", "unc", "test")
    _write_refcoco(tmp_path, "refcocog", "umd")
    assert load_refcoco(tmp_path, "refcocog", "umd", "val")[0].query == "left man"
    with pytest.raises(InputError, match=r"refs\(google\)\.p"):
        load_refcoco(tmp_path, "refcocog", "google", "val")
    with pytest.raises(InputError, match="image folder not found"):
        load_refcoco(tmp_path, "refcocog", "umd", "val", image_dir=tmp_path / "nope")


# --------------------------------------------------------------------------------------------
# OmniLabel


def _omnilabel_json() -> dict[str, Any]:
    return {
        "info": {"name": "tiny"},
        "images": [{"id": 7, "file_name": "a/7.jpg"}, {"id": 3, "file_name": "b/3.jpg"}],
        "descriptions": [
            {"id": 1, "text": "dog", "image_ids": [7, 3], "anno_info": {"type": "object_category"}},
            {"id": 2, "text": "the dog that is asleep", "image_ids": [7], "anno_info": {"type": "object_description"}},
            {"id": 3, "text": "cat", "image_ids": [3], "type": "object_category"},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "bbox": [1, 2, 3, 4], "description_ids": [1, 2]},
            {"id": 2, "image_id": 7, "bbox": [5, 5, 2, 2], "description_ids": [1]},
        ],
    }


def test_omnilabel_samples_per_label_space_entry(tmp_path: Path) -> None:
    path = tmp_path / "ol.json"
    path.write_text(json.dumps(_omnilabel_json()))
    data = load_omnilabel(path, tmp_path / "imgs")
    samples = data.samples()
    assert [s.id for s in samples] == ["3-1", "3-3", "7-1", "7-2"]
    by_id = {s.id: s for s in samples}
    assert by_id["7-1"].boxes == ((1.0, 2.0, 3.0, 4.0), (5.0, 5.0, 2.0, 2.0))
    assert by_id["7-2"].boxes == ((1.0, 2.0, 3.0, 4.0),) and not by_id["7-2"].is_category
    assert by_id["3-1"].boxes == () and by_id["3-3"].is_category
    assert by_id["7-2"].query == "the dog that is asleep"
    assert by_id["7-2"].image_path == tmp_path / "imgs" / "a/7.jpg"
    assert data.descriptions[2].num_words == 5 and data.has_boxes


def test_omnilabel_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="OmniLabel JSON not found"):
        load_omnilabel(tmp_path / "missing.json", tmp_path)
    broken = _omnilabel_json()
    del broken["descriptions"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(InputError, match="missing field 'descriptions'"):
        load_omnilabel(path, tmp_path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_omnilabel(path, tmp_path)


def test_malformed_shape_points_are_reported() -> None:
    shapes = [{"label": "target", "points": [[1, 2, 3], [4, 5, 6]]}]
    with pytest.raises(InputError, match="shape 0 has malformed points"):
        rasterize_shapes(shapes, H, W, where="x.json")
    with pytest.raises(InputError, match="shape 0: missing field 'points'"):
        rasterize_shapes([{"label": "target"}], H, W, where="x.json")
