"""Tests for eval.omnilabel_ap: OmniLabel box AP on small cases whose values are derived by hand.

Boxes that should match are predicted exactly (IoU 1.0), boxes meant as false positives do not
overlap anything, so every IoU threshold gives the same ranking and AP is the mean over the 101
recall points of the interpolated precision. Precision is ``tp / (tp + fp + eps)`` as in the
toolkit, so a "perfect" AP is 1 - 2e-16 and is compared with a tolerance.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from eval.omnilabel_ap import GROUPS, evaluate_omnilabel, harmonic_mean
from sam3_core.errors import InputError

CAT, DESCR = "object_category", "object_description"
BOX_A = [0.0, 0.0, 10.0, 10.0]
BOX_B = [20.0, 0.0, 10.0, 10.0]
BOX_C = [40.0, 40.0, 30.0, 30.0]
NOWHERE = [200.0, 200.0, 5.0, 5.0]  # overlaps no ground-truth box
ONE = pytest.approx(1.0, abs=1e-12)


def _descr(descr_id: int, text: str, kind: str, image_ids: tuple[int, ...] = (1,)) -> dict[str, Any]:
    return {"id": descr_id, "text": text, "image_ids": list(image_ids), "anno_info": {"type": kind}}


def _box(ann_id: int, bbox: list[float], descr_ids: list[int], image_id: int = 1, crowd: int = 0) -> dict[str, Any]:
    return {"id": ann_id, "image_id": image_id, "bbox": bbox, "description_ids": descr_ids, "iscrowd": crowd}


def _gt(descriptions: list[dict[str, Any]], annotations: list[dict[str, Any]], images=(1,)) -> dict[str, Any]:
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in images],
        "descriptions": descriptions,
        "annotations": annotations,
    }


def _pred(bbox: list[float], descr_ids: list[int], scores: list[float], image_id: int = 1) -> dict[str, Any]:
    return {"image_id": image_id, "bbox": bbox, "description_ids": descr_ids, "scores": scores}


def test_perfect_predictions_give_ap_one_and_hm_just_below_one() -> None:
    gt = _gt(
        [_descr(1, "dog", CAT), _descr(2, "the dog on the left", DESCR)],
        [_box(1, BOX_A, [1, 2]), _box(2, BOX_B, [1])],
    )
    preds = [_pred(BOX_A, [1, 2], [0.9, 0.8]), _pred(BOX_B, [1], [0.7])]
    res = evaluate_omnilabel(gt, preds)
    assert res.ap["categ"] == ONE and res.ap["descr"] == ONE
    assert res.ap["descr-pos"] == ONE and res.ap["descr-M"] == ONE
    assert res.ap["descr-S"] == -1.0 and res.num_gt["descr-S"] == -1  # no 1-3 word description at all
    assert res.num_gt["categ"] == 2 and res.num_gt["descr"] == 1
    assert res.hm == pytest.approx(2 * 1.0 * 1.0 / (1.0 + 1.0 + 1e-5), rel=1e-12)


def test_false_positive_ranked_above_true_positive_halves_ap() -> None:
    gt = _gt([_descr(1, "cat", CAT)], [_box(1, BOX_A, [1])])
    preds = [_pred(NOWHERE, [1], [0.9]), _pred(BOX_A, [1], [0.8])]
    # Ranked: FP, TP -> precision [0, 1/2], made monotone -> 1/2 at every recall point.
    assert evaluate_omnilabel(gt, preds).ap["categ"] == pytest.approx(0.5, abs=1e-12)


def test_interpolated_precision_tp_fp_tp() -> None:
    gt = _gt([_descr(1, "cup", CAT)], [_box(1, BOX_A, [1]), _box(2, BOX_B, [1])])
    preds = [_pred(BOX_A, [1], [0.9]), _pred(NOWHERE, [1], [0.8]), _pred(BOX_B, [1], [0.7])]
    # Ranked TP, FP, TP: recall [.5, .5, 1], precision [1, 1/2, 2/3] -> envelope [1, 2/3, 2/3].
    # Recall points 0.00..0.50 (51 of them) read 1; 0.51..1.00 (50) read 2/3.
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    res = evaluate_omnilabel(gt, preds)
    assert res.ap["categ"] == pytest.approx(expected, rel=1e-12)
    assert res.ap50["categ"] == pytest.approx(expected, rel=1e-12)
    assert res.ar["categ"] == ONE
    assert res.hm == -1.0  # no free-form description with ground truth: headline undefined


def test_prediction_for_negative_description_is_false_positive() -> None:
    gt = _gt(
        [
            _descr(10, "red car", DESCR),
            _descr(11, "a purple elephant", DESCR),  # in the label space, no box in the image
            _descr(12, "blue truck", DESCR, image_ids=(2,)),  # not in image 1's label space
        ],
        [_box(1, BOX_A, [10])],
        images=(1, 2),
    )
    preds = [
        _pred(BOX_A, [10], [0.5]),
        _pred(NOWHERE, [11], [0.9]),
        _pred(NOWHERE, [12], [0.99]),  # outside the label space: not evaluated
        _pred(NOWHERE, [10], [0.99], image_id=99),  # unknown image: not evaluated
    ]
    res = evaluate_omnilabel(gt, preds)
    assert res.ap["descr"] == pytest.approx(0.5, abs=1e-12)  # FP (0.9) above TP (0.5)
    assert res.ap["descr-pos"] == ONE  # descr-pos keeps only descriptions with a box in the image
    assert res.ap["descr-S"] == pytest.approx(0.5, abs=1e-12)  # both have <= 3 words
    assert res.num_gt["descr"] == 1


def test_word_count_groups_boundaries() -> None:
    texts = {
        1: "the red car",  # 3 -> S
        2: "  a   dog  on grass ",  # 4 (whitespace split) -> M
        3: "one two three four five six seven eight",  # 8 -> M
        4: "one two three four five six seven eight nine",  # 9 -> L
        5: "one two three four five six seven eight nine ten eleven",  # 11 -> L
    }
    gt = _gt(
        [_descr(i, t, DESCR) for i, t in texts.items()],
        [_box(i, [10.0 * i, 0.0, 5.0, 5.0], [i]) for i in texts],
    )
    preds = [_pred([10.0 * i, 0.0, 5.0, 5.0], [i], [0.5]) for i in texts]
    res = evaluate_omnilabel(gt, preds)
    assert (res.num_gt["descr-S"], res.num_gt["descr-M"], res.num_gt["descr-L"]) == (1, 2, 2)
    assert res.num_gt["descr"] == 5


def test_group_aps_differ_by_length() -> None:
    gt = _gt(
        [
            _descr(1, "the red car", DESCR),
            _descr(2, "the dog on the left", DESCR),
            _descr(3, "the person who is holding the umbrella near the door", DESCR),
        ],
        [_box(1, BOX_A, [1]), _box(2, BOX_B, [2]), _box(3, BOX_C, [2]), _box(4, [100.0, 0, 9, 9], [3])],
    )
    preds = [
        _pred(BOX_A, [1], [0.9]),  # S: perfect
        _pred(BOX_B, [2], [0.8]),  # M: one of two boxes found
        _pred(NOWHERE, [3], [0.95]),
        _pred([100.0, 0, 9, 9], [3], [0.7]),  # L: FP above TP
    ]
    res = evaluate_omnilabel(gt, preds)
    assert res.ap["descr-S"] == ONE
    # M: recall reaches only 0.5 with precision 1 -> 51 of 101 recall points read 1, the rest 0.
    assert res.ap["descr-M"] == pytest.approx(51 / 101, rel=1e-12)
    assert res.ap["descr-L"] == pytest.approx(0.5, abs=1e-12)
    assert res.ar["descr"] == pytest.approx(3 / 4, rel=1e-12)


def test_headline_is_harmonic_mean_of_descr_and_categ() -> None:
    gt = _gt(
        [_descr(1, "cat", CAT), _descr(2, "the sleeping cat", DESCR)],
        [_box(1, BOX_A, [1, 2])],
    )
    preds = [_pred(NOWHERE, [1], [0.9]), _pred(BOX_A, [1, 2], [0.8, 0.8])]
    res = evaluate_omnilabel(gt, preds)
    assert res.ap["categ"] == pytest.approx(0.5, abs=1e-12) and res.ap["descr"] == ONE
    assert res.hm == pytest.approx(2 * 0.5 * 1.0 / (0.5 + 1.0 + 1e-5), rel=1e-12)
    assert harmonic_mean(0.3, 0.6) == pytest.approx(0.36 / (0.9 + 1e-5), rel=1e-12)
    assert res.as_dict()["AP"] == res.hm and res.as_dict()["AP-descr-pos"] == ONE


def test_crowd_box_absorbs_its_detection() -> None:
    gt = _gt([_descr(1, "people", CAT)], [_box(1, BOX_A, [1]), _box(2, BOX_C, [1], crowd=1)])
    # Inside the crowd region: IoU = intersection / detection area = 1 -> matched to an ignored box.
    preds = [_pred([45.0, 45.0, 10.0, 10.0], [1], [0.9]), _pred(BOX_A, [1], [0.5])]
    res = evaluate_omnilabel(gt, preds)
    assert res.ap["categ"] == ONE
    assert res.num_gt["categ"] == 1


def test_at_most_100_detections_per_image_and_description() -> None:
    gt = _gt([_descr(1, "cat", CAT)], [_box(1, BOX_A, [1])])
    preds = [_pred([300.0 + 10 * k, 0.0, 5.0, 5.0], [1], [0.9]) for k in range(100)]
    preds.append(_pred(BOX_A, [1], [0.1]))  # the only true positive is the 101st
    assert evaluate_omnilabel(gt, preds).ap["categ"] == 0.0
    # With room for 101 detections the TP counts: precision 1/101 at recall 1, flat after interpolation.
    assert evaluate_omnilabel(gt, preds, max_dets=101).ap["categ"] == pytest.approx(1 / 101, rel=1e-12)


def test_inputs_are_not_modified_and_groups_are_reported() -> None:
    gt = _gt([_descr(1, "cat", CAT)], [_box(1, BOX_A, [1])])
    preds = [_pred(BOX_A, [1], [0.5])]
    gt_before, preds_before = copy.deepcopy(gt), copy.deepcopy(preds)
    res = evaluate_omnilabel(gt, preds)
    assert gt == gt_before and preds == preds_before
    assert set(res.ap) == set(GROUPS) == {"categ", "descr", "descr-pos", "descr-S", "descr-M", "descr-L"}


def test_bad_inputs_raise_input_error() -> None:
    gt = _gt([_descr(1, "cat", CAT)], [_box(1, BOX_A, [1])])
    with pytest.raises(InputError, match="1 description_ids but 2 scores"):
        evaluate_omnilabel(gt, [_pred(BOX_A, [1], [0.5, 0.4])])
    with pytest.raises(InputError, match="missing field 'scores'"):
        evaluate_omnilabel(gt, [{"image_id": 1, "bbox": BOX_A, "description_ids": [1]}])
    with pytest.raises(InputError, match="bbox"):
        evaluate_omnilabel(gt, [_pred([1.0, 2.0], [1], [0.5])])
    no_boxes = {k: v for k, v in gt.items() if k != "annotations"}
    with pytest.raises(InputError, match="annotations"):
        evaluate_omnilabel(no_boxes, [])
    bad_type = _gt([{**_descr(1, "cat", CAT), "anno_info": {"type": "thing"}}], [])
    with pytest.raises(InputError, match=r"anno_info\.type"):
        evaluate_omnilabel(bad_type, [])
