"""SA-Co/VEval metrics against hand-computed values: masklet IoU, video cgF1, pHOTA (id switches, alphas, scores)."""

from __future__ import annotations

import numpy as np
import pytest

from eval.saco.metrics import to_rles
from eval.saco.video_metrics import (
    ALPHAS,
    HotaSums,
    Masklet,
    VideoPhraseGT,
    VideoPhrasePred,
    hota_sequence,
    masklet_iou,
    summarize_hota,
    video_metrics,
    video_pair_counts,
)
from sam3_core.errors import InputError
from sam3_core.postprocess import masks_to_rle

WIDTH = 100


def strip(start: int, stop: int) -> dict:
    mask = np.zeros((1, 1, WIDTH), dtype=bool)
    mask[0, 0, start:stop] = True
    return masks_to_rle(mask)[0]


def masklet(*frames: tuple[int, int] | None, score: float = 0.9) -> Masklet:
    return Masklet([strip(*f) if f else None for f in frames], score=score)


def test_masklet_iou_sums_over_frames() -> None:
    a = to_rles([strip(0, 10)])[0]
    b = to_rles([strip(0, 20)])[0]
    c = to_rles([strip(50, 80)])[0]
    # frame 0: I 10, U 20; frame 1: prediction absent, ground truth 30 pixels -> 10 / 50
    assert masklet_iou([a, None], [b, c]) == pytest.approx(10 / 50)
    assert masklet_iou([None, None], [None, None]) == 1.0
    with pytest.raises(InputError, match="length"):
        masklet_iou([a], [a, a])


def test_video_pair_counts_thresholds_and_crowd() -> None:
    gt = [masklet((0, 50), (0, 50)), Masklet([strip(60, 90), None], crowd=True)]
    pred = [masklet((0, 50), (0, 25)), masklet((60, 90), None, score=0.49)]
    counts = video_pair_counts(gt, pred)
    # IoU (50 + 25) / (50 + 50) = 0.75 -> TP at 0.50..0.75; the crowd masklet and the low score are dropped
    assert (counts.num_gt, counts.num_pred) == (1, 1)
    assert counts.tp == (1,) * 6 + (0,) * 4


def test_hota_perfect_track() -> None:
    gt = [masklet((0, 10), (0, 10), None)]
    m = summarize_hota([hota_sequence(gt, [masklet((0, 10), (0, 10), None)])])
    assert m["pHOTA"] == pytest.approx(1.0) and m["LocA"] == pytest.approx(1.0)


def test_hota_id_switch_halves_association() -> None:
    gt = [masklet((0, 10), (0, 10), (0, 10), (0, 10))]
    pred = [masklet((0, 10), (0, 10), None, None), masklet(None, None, (0, 10), (0, 10))]
    m = summarize_hota([hota_sequence(gt, pred)])
    # every frame is detected (DetA 1); each predicted track covers half the object: AssA 1/2, AssPr 1
    assert m["DetA"] == pytest.approx(1.0) and m["AssA"] == pytest.approx(0.5)
    assert m["AssRe"] == pytest.approx(0.5) and m["AssPr"] == pytest.approx(1.0)
    assert m["pHOTA"] == pytest.approx(np.sqrt(0.5))


def test_hota_localization_threshold_per_alpha() -> None:
    m = summarize_hota([hota_sequence([masklet((0, 50))], [masklet((0, 26))])])  # IoU 0.52
    matched = int((ALPHAS <= 0.52).sum())
    assert matched == 10
    assert m["pHOTA"] == pytest.approx(matched / len(ALPHAS))
    assert m["LocA"] == pytest.approx((matched * 0.52 + (len(ALPHAS) - matched)) / len(ALPHAS))


def test_score_filters_differ_between_cgf1_and_hota() -> None:
    gt = [masklet((0, 10))]
    at_half = [masklet((0, 10), score=0.5)]
    assert video_pair_counts(gt, at_half).num_pred == 1  # cgF1 keeps scores >= 0.5
    sums = hota_sequence(gt, at_half)  # pHOTA keeps scores > 0.5
    assert sums.tp.sum() == 0 and sums.fn.tolist() == [1.0] * len(ALPHAS)


def test_video_metrics_mixed_pairs() -> None:
    gt = [VideoPhraseGT("pos", [masklet((0, 10), (0, 10))]), VideoPhraseGT("neg"),
          VideoPhraseGT("neg-answered"), VideoPhraseGT("missed", [masklet((0, 20), None)])]
    pred = [VideoPhrasePred("pos", [masklet((0, 10), (0, 10))]),
            VideoPhrasePred("neg-answered", [masklet((30, 40), (30, 40))])]
    m = video_metrics(gt, pred)
    assert (m["IL_TP"], m["IL_FP"], m["IL_TN"], m["IL_FN"]) == (1, 1, 1, 1)
    assert m["IL_MCC"] == pytest.approx(0.0, abs=1e-6)
    # positive-micro: 1 TP, 0 positive FPs, 1 FN -> pmF1 = 2/3 at every threshold
    assert m["positive_micro_F1"] == pytest.approx(2 / 3, abs=1e-3)
    # pHOTA: 2 TP frames, 1 FN frame, 2 FP frames; association perfect -> HOTA = sqrt(2/5)
    assert m["DetA"] == pytest.approx(2 / 5) and m["AssA"] == pytest.approx(1.0)
    assert m["pHOTA"] == pytest.approx(np.sqrt(2 / 5))
    assert m["sequences"] == 4


def test_hota_sums_roundtrip_and_errors() -> None:
    sums = hota_sequence([masklet((0, 10))], [masklet((0, 8))])
    again = HotaSums.from_dict(sums.to_dict())
    assert summarize_hota([again]) == summarize_hota([sums])
    assert summarize_hota([]) == {}
    with pytest.raises(InputError):
        HotaSums.from_dict({"tp": [1]})
    with pytest.raises(InputError, match="not in the ground truth"):
        video_metrics([VideoPhraseGT("a")], [VideoPhrasePred("b")])
    with pytest.raises(InputError, match="length"):
        hota_sequence([masklet((0, 1))], [masklet((0, 1), (0, 1))])
