"""COCO loading and validation, training pairs, augmentation alignment, and the synthetic generator."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from finetune.data import DatasetError, decode_mask, load_coco
from finetune.pairs import PairCollator, PairDataset, PairOptions, augment
from finetune.synthetic import SyntheticSpec, category_names, write_synthetic_dataset

SMALL = SyntheticSpec(image_size=56, min_radius=4, max_radius=10, max_objects=4)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("syn"), 6, seed=3, spec=SMALL)


@pytest.fixture
def processor_parts():
    from transformers import Sam3ImageProcessor

    return Sam3ImageProcessor(size={"height": 56, "width": 56}, mask_size={"height": 16, "width": 16})


def _write(tmp_path, document, image_size=(20, 30)):
    (tmp_path / "a.png").parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((*image_size, 3), np.uint8)).save(tmp_path / "a.png")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(document))
    return path


def _doc(**changes):
    document = {"images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}],
                "categories": [{"id": 1, "name": "box"}],
                "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8],
                                 "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]]}]}
    for key, value in changes.items():
        document[key] = value
    return document


def test_synthetic_dataset_is_deterministic_and_consistent(synthetic, tmp_path):
    records = load_coco(synthetic)
    assert len(records) == 6 and all(r.instances for r in records)
    assert {i.category for r in records for i in r.instances} <= set(category_names(SMALL))
    again = write_synthetic_dataset(tmp_path, 6, seed=3, spec=SMALL)
    assert json.loads(again.read_text()) == json.loads(synthetic.read_text())
    image = np.asarray(Image.open(records[0].path))
    mask = decode_mask(records[0].instances[0].segmentation, 56, 56, "x")
    colour = image[mask].mean(0)
    assert np.abs(colour - image[~mask].mean(0)).max() > 20  # the object stands out from the background


def test_polygon_and_rle_decode_to_the_same_mask(tmp_path):
    poly = [[2, 3, 12, 3, 12, 11, 2, 11]]
    from pycocotools import mask as mask_utils

    from_poly = decode_mask(poly, 20, 30, "r")
    rle = mask_utils.encode(np.asfortranarray(from_poly.astype(np.uint8)))
    assert np.array_equal(decode_mask({"size": [20, 30], "counts": rle["counts"].decode()}, 20, 30, "r"), from_poly)
    uncompressed = {"size": [20, 30], "counts": [0, 600]}
    assert decode_mask(uncompressed, 20, 30, "r").all()
    assert from_poly.sum() == pytest.approx(10 * 8, abs=20)


@pytest.mark.parametrize(("changes", "message"), [
    ({"categories": [{"id": 1, "name": " "}]}, "category id=1: empty name"),
    ({"images": [{"id": 1, "file_name": "missing.png", "height": 20, "width": 30}]}, "missing.png"),
    ({"annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8],
                       "segmentation": [[2, 3, 42, 3, 42, 11]]}]}, "annotation id=5 (image_id=1): polygon"),
    ({"annotations": [{"id": 6, "image_id": 1, "category_id": 9, "bbox": [2, 3, 10, 8],
                       "segmentation": [[2, 3, 12, 3, 12, 11]]}]}, "annotation id=6 (image_id=1): unknown category"),
    ({"annotations": [{"id": 7, "image_id": 3, "category_id": 1, "bbox": [2, 3, 10, 8],
                       "segmentation": [[2, 3, 12, 3, 12, 11]]}]}, "annotation id=7 (image_id=3): no image"),
    ({"annotations": [{"id": 8, "image_id": 1, "category_id": 1, "bbox": [2, 3, 0, 8],
                       "segmentation": [[2, 3, 12, 3, 12, 11]]}]}, "annotation id=8 (image_id=1): bbox"),
    ({"annotations": []}, "no annotations"),
])
def test_bad_records_get_errors_naming_them(tmp_path, changes, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_coco(_write(tmp_path, _doc(**changes)))


def test_bad_rle_and_wrong_image_size_are_named(tmp_path):
    bad_rle = _doc(annotations=[{"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2],
                                 "segmentation": {"size": [10, 10], "counts": "xx"}}])
    records = load_coco(_write(tmp_path, bad_rle))
    with pytest.raises(DatasetError, match="annotation id=9"):
        decode_mask(records[0].instances[0].segmentation, 20, 30, records[0].instances[0].record)
    from finetune.data import load_image

    shutil.copy(tmp_path / "a.png", tmp_path / "b.png")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="image id=1"):
        load_image(records[0])


def test_augment_keeps_masks_and_image_aligned():
    rng = np.random.default_rng(0)
    image = np.zeros((40, 50, 3), np.uint8)
    masks = np.zeros((1, 40, 50), bool)
    masks[0, 10:20, 5:15] = True
    image[masks[0]] = 255
    for _ in range(10):
        out_image, out_masks, keep = augment(image, masks, rng, PairOptions(flip_prob=0.5, crop_prob=1.0))
        assert out_image.shape[:2] == out_masks.shape[1:]
        if keep[0]:
            assert (out_image[out_masks[0]] == 255).all() and (out_image[~out_masks[0]] == 0).all()


def test_pairs_have_positives_hard_negatives_and_explicit_negatives(synthetic, processor_parts):
    records = load_coco(synthetic)
    records[0].negatives = ["purple hexagon"]
    dataset = PairDataset(records, processor_parts, PairOptions(augment=False, hard_negatives=2, max_positives=5))
    item = dataset[0]
    present = set(records[0].phrases)
    assert item["pixel_values"].shape == (3, 56, 56)
    assert "purple hexagon" in item["phrases"]
    negatives = [p for p, t in zip(item["phrases"], item["targets"]) if len(t["boxes"]) == 0]
    assert len(negatives) == 3 and not set(negatives) & present
    for phrase, target in zip(item["phrases"], item["targets"]):
        count = sum(i.category == phrase for i in records[0].instances)
        assert len(target["boxes"]) == count == len(target["masks"])
        for box, mask in zip(target["boxes"], target["masks"]):  # boxes are the masks' extents
            ys, xs = torch.nonzero(mask, as_tuple=True)
            extent = [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
            assert box.tolist() == pytest.approx([v / 56 for v in extent], abs=1e-5)


def test_collator_builds_exemplar_prompts(synthetic, processor_parts):
    from transformers import CLIPTokenizer

    from sam3_core.tiny import write_byte_tokenizer

    records = load_coco(synthetic)
    dataset = PairDataset(records, processor_parts, PairOptions(exemplar_prob=1.0))
    write_byte_tokenizer(synthetic.parent / "tok")
    batch = PairCollator(CLIPTokenizer.from_pretrained(synthetic.parent / "tok"))([dataset[0], dataset[1]])
    pairs = len(batch["targets"])
    assert batch["input_ids"].shape == (pairs, 32) and batch["image_index"].max() == 1
    labels = batch["input_boxes_labels"][:, 0]
    has_targets = torch.tensor([len(t["boxes"]) > 0 for t in batch["targets"]])
    assert torch.equal(labels == 1, has_targets) and (labels[~has_targets] == -10).all()
