"""SA-Co/VEval: ground-truth loading, scoring stored masklets by hand, and ``eval saco-video`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from eval.saco.dataset import load_saco_videos
from eval.saco.testing import VIDEO_FRAMES, VIDEO_PAIRS, box_rle, write_saco_videos
from eval.saco.video_metrics import Masklet, VideoPhraseGT, VideoPhrasePred, video_metrics
from eval.tasks import TaskSpec, load_task
from sam3_core.errors import InputError


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_saco_videos(tmp_path_factory.mktemp("veval"))


def test_loader_reads_pairs_and_negatives(data) -> None:
    pairs = load_saco_videos(data, "test", {"": data / "media"})
    assert [p.id for p in pairs] == ["toy/0/5", "toy/0/6", "toy/1/5"]
    assert [len(p.masklets) for p in pairs] == [1, 0, 2]
    assert pairs[0].frames[1] == data / "media" / "vid_a" / "00004.jpg" and pairs[0].phrase == "a dog"
    assert pairs[0].masklets[0].frames[2] is None and len(pairs[2].masklets[1].frames) == VIDEO_FRAMES
    with pytest.raises(InputError, match="cannot read SA-Co ground truth"):
        load_saco_videos(data / "media" / "vid_a" / "00000.jpg", "test")


def test_loader_wants_video_ground_truth(tmp_path) -> None:
    images_only = tmp_path / "silver_a_merged_test.json"
    images_only.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(InputError, match="no SA-Co/VEval ground truth"):
        load_saco_videos(tmp_path, "test")
    (tmp_path / "saco_veval_b_test.json").write_text(json.dumps({"videos": [], "annotations": []}))
    with pytest.raises(InputError, match="video_np_pairs"):
        load_saco_videos(tmp_path, "test")


def test_loader_rejects_masklets_of_the_wrong_length(data, tmp_path) -> None:
    document = json.loads((data / "saco_veval_toy_test.json").read_text())
    document["annotations"][0]["segmentations"].pop()
    bad = tmp_path / "saco_veval_bad_test.json"
    bad.write_text(json.dumps(document))
    with pytest.raises(InputError, match="one entry per frame"):
        load_saco_videos(bad, "test")


def record(masklets: list[tuple[float, list]]) -> dict:
    return {"id": "x", "masklets": [{"score": s, "frames": [box_rle(*b) if b else None for b in boxes]}
                                    for s, boxes in masklets]}


def test_task_scores_stored_masklets_by_hand(data) -> None:
    task = load_task(TaskSpec("saco_video", str(data), "test", {"media_dirs": {"": str(data / "media")}}))
    items = task.items()
    truth = {(v, c): m for v, c, _, m in VIDEO_PAIRS}
    answers = {  # the dog of video 0 exactly; a false cat; video 1's first dog only
        "toy/0/5": record([(0.9, truth[(0, 5)][0])]),
        "toy/0/6": record([(0.8, [(0, 0, 4, 4)] * VIDEO_FRAMES)]),
        "toy/1/5": record([(0.7, truth[(1, 5)][0])]),
    }
    scored = [(item, task.score_record(item, answers[item.id])) for item in items]
    metrics = task.summarize(scored)["subsets"]["toy"]
    # IL: TP 2, FP 1, FN 0, TN 0 -> MCC 0; localization: 2 TP, 1 FN (video 1's second dog), no positive FP
    assert (metrics["IL_TP"], metrics["IL_FP"]) == (2, 1) and metrics["cgF1"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["positive_micro_F1"] == pytest.approx(0.8, abs=1e-3)
    # pHOTA by frames: 3 + 4 TP (video 0's dog is absent on frame 2); 2 FN frames of the missed dog; 4 FP
    # frames of the cat; association perfect
    assert metrics["DetA"] == pytest.approx(7 / 13) and metrics["AssA"] == pytest.approx(1.0)
    assert metrics["pHOTA"] == pytest.approx((7 / 13) ** 0.5)
    with pytest.raises(InputError, match="masklets"):
        task.score_record(items[0], {"id": "x", "masklets": [{"frames": []}]})


def test_saco_video_end_to_end(data, video_checkpoint, tmp_path) -> None:
    out = tmp_path / "veval"
    argv = ["eval", "saco-video", "--data", str(data), "--out", str(out), "--model", video_checkpoint,
            "--device", "cpu", "--image-dir", str(data / "media"), "--planner", "direct", "--score-threshold", "0.0",
            "--no-progress", "--worst", "1", "--concurrency", "2", "--cgf1-threshold", "0.05",
            "--detection-threshold", "0.05", "--new-object-threshold", "0.1", "--hotstart-delay", "1"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "saco_video" and report["samples"]["scored"] == 3
    metrics = report["metrics"]["subsets"]["toy"]
    # the YouTube-VIS prediction file, scored independently, gives the report's numbers
    entries = json.loads((out / "saco_veval_predictions_toy.json").read_text())
    assert entries and all(len(e["segmentations"]) == VIDEO_FRAMES == len(e["bboxes"]) for e in entries)
    gt = [VideoPhraseGT((p.video_id, p.category_id), p.masklets) for p in load_saco_videos(data, "test")]
    preds: dict = {}
    for e in entries:
        preds.setdefault((e["video_id"], e["category_id"]), []).append(Masklet(e["segmentations"], score=e["score"]))
    expected = video_metrics(gt, [VideoPhrasePred(k, v) for k, v in preds.items()], score_threshold=0.05)
    assert metrics["IL_TP"] + metrics["IL_FP"] > 0
    for name in ("cgF1", "IL_MCC", "positive_micro_F1", "pHOTA", "DetA", "AssA"):
        assert metrics[name] == pytest.approx(expected[name], abs=1e-9)
    assert "pHOTA" in (out / "report.md").read_text()
    assert main(["eval", "score", str(out), "--worst", "0"]) == 0
    assert json.loads((out / "report.json").read_text())["metrics"]["subsets"]["toy"] == metrics


def test_saco_video_refuses_the_agent_planner(data, video_checkpoint, tmp_path, caplog) -> None:
    argv = ["eval", "saco-video", "--data", str(data), "--out", str(tmp_path / "x"), "--model", video_checkpoint,
            "--device", "cpu", "--no-progress", "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m"]
    assert main(argv) == 2  # refused before any model loads or the LLM is called
    assert "--planner direct only" in caplog.text and not (tmp_path / "x").exists()
