"""SA-Co image metrics against hand-computed values (cgF1, IL_MCC, pmF1, ties, crowds, oracle)."""

from __future__ import annotations

import numpy as np
import pytest

from eval.saco.metrics import (
    IOU_THRESHOLDS,
    ImagePhraseGT,
    ImagePhrasePred,
    PairCounts,
    cgf1_from_masks,
    counts_from_ious,
    pair_counts,
    select_oracle,
    summarize_counts,
)
from sam3_core.errors import InputError

WIDTH = 200


def strip(start: int, stop: int) -> np.ndarray:
    """A ``(1, WIDTH)`` mask covering columns ``start:stop`` (IoUs of strips are easy to compute by hand)."""
    mask = np.zeros((1, WIDTH), dtype=bool)
    mask[0, start:stop] = True
    return mask


def stack(*masks: np.ndarray) -> np.ndarray:
    return np.stack(masks) if masks else np.zeros((0, 1, WIDTH), dtype=bool)


def test_pair_counts_ious_at_and_between_thresholds() -> None:
    # IoU 50/80 = 0.625: a TP at 0.50, 0.55, 0.60 only; IoU 45/50 = 0.9 sits on a threshold and counts there
    counts = pair_counts(stack(strip(0, 50), strip(100, 150)), stack(strip(0, 80), strip(100, 145)), [0.9, 0.8])
    assert counts.num_gt == 2 and counts.num_pred == 2
    assert counts.tp == (2, 2, 2, 1, 1, 1, 1, 1, 1, 0)
    exact_half = pair_counts(stack(strip(0, 50)), stack(strip(0, 25)), [1.0])  # IoU exactly 0.5
    assert exact_half.tp == (1,) + (0,) * 9
    exact_75 = pair_counts(stack(strip(0, 40)), stack(strip(0, 30)), [1.0])  # IoU exactly 0.75
    assert exact_75.tp == (1,) * 6 + (0,) * 4


def test_score_threshold_is_inclusive_and_drops_predictions() -> None:
    counts = pair_counts(stack(strip(0, 50)), stack(strip(0, 50), strip(60, 90)), [0.5, 0.4999])
    assert counts.num_pred == 1 and counts.tp == (1,) * 10
    assert pair_counts(stack(), stack(strip(0, 5)), [0.3]).true_negative


def test_hungarian_matching_beats_greedy() -> None:
    # greedy by IoU would pair p0-g0 (0.7) and leave p1 without a match; the optimal pairing keeps two 0.6s
    ious = np.array([[0.7, 0.6], [0.6, 0.0]])
    counts = counts_from_ious(ious)
    assert counts.tp[0] == 2 and counts.tp[IOU_THRESHOLDS.tolist().index(0.6)] == 2
    assert counts.tp[IOU_THRESHOLDS.tolist().index(0.65)] == 0


def test_crowded_image_matches_every_instance_in_any_order() -> None:
    rng = np.random.default_rng(0)
    gt = [strip(10 * i, 10 * i + 8) for i in range(20)]
    pred = [gt[i] for i in rng.permutation(20)] + [strip(199, 200)]  # every instance, shuffled, and one stray
    counts = pair_counts(stack(*gt), stack(*pred), [0.9] * 21)
    assert counts.tp == (20,) * 10 and counts.num_pred == 21
    half = pair_counts(stack(*gt), stack(*[strip(10 * i, 10 * i + 4) for i in range(20)]), [0.9] * 20)
    assert half.tp == (20,) + (0,) * 9  # each IoU exactly 4/8


def test_crowd_segments_are_left_out() -> None:
    counts = pair_counts(stack(strip(0, 50), strip(60, 120)), stack(strip(0, 50)), [0.9], gt_crowd=[False, True])
    assert counts.num_gt == 1 and counts.tp == (1,) * 10
    only_crowd = pair_counts(stack(strip(0, 50)), stack(), [], gt_crowd=[True])
    assert only_crowd.true_negative


def _mixed_case() -> tuple[list[ImagePhraseGT], list[ImagePhrasePred]]:
    gt = [
        ImagePhraseGT("A", stack(strip(0, 50), strip(100, 150))),  # two instances
        ImagePhraseGT("B", stack(strip(0, 40))),  # missed entirely
        ImagePhraseGT("C", stack()),  # negative, answered: image-level FP
        ImagePhraseGT("D", stack()),  # negative, answer below the score threshold: TN
        ImagePhraseGT("E", stack(strip(0, 50))),
        ImagePhraseGT("F", stack(strip(0, 10)), exhaustive=False),  # not scored
    ]
    pred = [
        ImagePhrasePred("A", stack(strip(0, 80), strip(100, 150)), [0.9, 0.8]),  # IoU 0.625 and 1
        ImagePhrasePred("C", stack(strip(0, 10)), [0.9]),
        ImagePhrasePred("D", stack(strip(0, 10)), [0.2]),
        ImagePhrasePred("E", stack(strip(0, 46)), [0.7]),  # IoU 0.92
        ImagePhrasePred("F", stack(strip(100, 110)), [0.9]),
    ]
    return gt, pred


def test_cgf1_mixed_case_by_hand() -> None:
    gt, pred = _mixed_case()
    m = cgf1_from_masks(gt, pred)
    assert m["pairs"] == 5 and m["positive_pairs"] == 3
    assert (m["IL_TP"], m["IL_FP"], m["IL_TN"], m["IL_FN"]) == (2, 1, 1, 1)
    mcc = (2 * 1 - 1 * 1) / np.sqrt(3 * 3 * 2 * 2)
    assert m["IL_MCC"] == pytest.approx(mcc, abs=1e-5)
    # TP summed over A and E: 3 at 0.50-0.60, 2 at 0.65-0.90, 1 at 0.95; positive FPs = 3 - TP; FNs = 4 - TP
    pm_f1 = np.array([6 / 7] * 3 + [4 / 7] * 6 + [2 / 7])
    assert m["positive_micro_F1"] == pytest.approx(pm_f1.mean(), abs=1e-3)
    assert m["positive_micro_F1@0.5"] == pytest.approx(6 / 7, abs=1e-3)
    assert m["positive_micro_F1@0.75"] == pytest.approx(4 / 7, abs=1e-3)
    assert m["cgF1"] == pytest.approx(pm_f1.mean() * mcc, abs=1e-3)
    # plain precision also counts C's false positive: TP / (TP + 4 - TP)
    assert m["precision@0.5"] == pytest.approx(3 / 4, abs=1e-3)
    assert m["IL_FPR"] == pytest.approx(0.5, abs=1e-5)
    # macro over A and E: A's F1 is 1 at 0.5-0.6 and 0.5 after; E's is 1 up to 0.9, then 0
    f1_a = np.array([1.0] * 3 + [0.5] * 7)
    f1_e = np.array([1.0] * 9 + [0.0])
    assert m["positive_macro_F1"] == pytest.approx(((f1_a + f1_e) / 2).mean(), abs=1e-3)


def test_all_negative_and_both_empty_pairs() -> None:
    empty = [ImagePhraseGT(i, stack()) for i in range(4)]
    m = cgf1_from_masks(empty, [])
    assert m["IL_TN"] == 4 and m["IL_MCC"] == 0.0 and m["cgF1"] == 0.0
    assert m["positive_macro_F1"] == -1.0  # undefined: no pair with ground truth and predictions
    answered = cgf1_from_masks(empty, [ImagePhrasePred(0, stack(strip(0, 5)), [0.9])])
    assert (answered["IL_FP"], answered["IL_TN"]) == (1, 3) and answered["IL_MCC"] == 0.0
    assert answered["IL_FPR"] == pytest.approx(0.25, abs=1e-5)


def test_perfect_answers_give_cgf1_near_one() -> None:
    gt = [ImagePhraseGT("p", stack(strip(0, 50))), ImagePhraseGT("n", stack())]
    m = cgf1_from_masks(gt, [ImagePhrasePred("p", stack(strip(0, 50)), [0.99])])
    assert m["IL_MCC"] == pytest.approx(1.0, abs=1e-5) and m["cgF1"] == pytest.approx(1.0, abs=1e-3)


def test_rle_input_equals_array_input() -> None:
    from sam3_core.postprocess import masks_to_rle

    gt, pred = _mixed_case()
    as_rle = [ImagePhrasePred(p.pair_id, masks_to_rle(p.masks), p.scores) for p in pred]
    assert cgf1_from_masks(gt, as_rle) == cgf1_from_masks(gt, pred)


def test_oracle_keeps_the_most_favourable_annotation() -> None:
    perfect, partial = PairCounts(1, 1, (1,) * 10), PairCounts(2, 1, (1,) * 10)
    negative = PairCounts(0, 0, ())
    assert select_oracle([partial, perfect]) is perfect
    assert select_oracle([perfect, negative]) is negative  # an agreed "absent" always wins
    assert select_oracle([negative, partial]) is negative
    gt_a = [ImagePhraseGT("x", stack(strip(0, 50), strip(60, 70)))]
    gt_b = [ImagePhraseGT("x", stack(strip(0, 50)))]
    pred = [ImagePhrasePred("x", stack(strip(0, 50)), [0.9])]
    alone = cgf1_from_masks(gt_a, pred)
    oracle = cgf1_from_masks(gt_a, pred, oracle_gts=[gt_b])
    assert oracle["positive_micro_F1"] > alone["positive_micro_F1"]
    assert oracle["positive_micro_F1"] == pytest.approx(1.0, abs=1e-3)


def test_summarize_counts_roundtrip_and_validation() -> None:
    counts = [PairCounts(2, 3, (2,) * 5 + (1,) * 5), PairCounts(0, 0, ())]
    again = [PairCounts.from_dict(c.to_dict()) for c in counts]
    assert summarize_counts(again) == summarize_counts(counts)
    assert summarize_counts([]) == {}
    with pytest.raises(InputError):
        PairCounts.from_dict({"num_gt": 1, "num_pred": 1, "tp": [2] * 10})
    with pytest.raises(InputError):
        PairCounts.from_dict({"num_gt": 1})


def test_bad_input_is_named() -> None:
    gt = [ImagePhraseGT("a", stack())]
    with pytest.raises(InputError, match="not in the ground truth"):
        cgf1_from_masks(gt, [ImagePhrasePred("b", stack(), [])])
    with pytest.raises(InputError, match="twice"):
        cgf1_from_masks(gt + gt, [])
    with pytest.raises(InputError, match="scores"):
        pair_counts(stack(), stack(strip(0, 2)), [])
    with pytest.raises(InputError, match="sizes"):
        pair_counts(stack(strip(0, 2)), np.ones((1, 3, 3), dtype=bool), [0.9])
