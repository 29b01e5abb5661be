"""The shipped demo checkpoint's tracker: it loads through the same ``from_pretrained`` paths as facebook/sam3
(image engine with tracker, video engine), refines from a box or a click, and ``track`` follows the objects
of held-out synthetic clips (drawn with seeds used neither for training nor for the recorded figures)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finetune.tracker.evaluate import held_out_clips, refine_iou, track_j
from sam3_core.defaults import DEMO_MODEL_DIR, resolve_model_id

# Recorded in sam3_core/demo_model/training.json ("tracker"), on 50 held-out images / 12 held-out 8-frame clips:
# refine IoU 0.94 from a box and 0.94 from one click; tracking J 0.82 started from boxes, 0.76 from phrases. The
# untrained tracker scores 0.05, 0.05, 0.002 and 0.11. The bounds sit well below the measured figures (other CPUs,
# other seeds, fewer samples here) and far above the untrained tracker's.
REFINE_BOX_MIN = 0.75
REFINE_CLICK_MIN = 0.7
TRACK_BOX_MIN = 0.5
TRACK_PHRASE_MIN = 0.4


def test_demo_checkpoint_is_a_video_checkpoint_with_a_trained_tracker_record():
    config = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "sam3_video" and config["tracker_config"]
    record = json.loads((DEMO_MODEL_DIR / "training.json").read_text())["tracker"]
    trained, random = record["trained_tracker"], record["random_tracker"]
    for key in ("refine_box_iou", "track_J_box_start", "track_J_phrase"):
        assert trained[key] > random[key] + 0.2, key


@pytest.fixture(scope="module")
def demo_image_engine():
    from sam3_core import Sam3Engine

    with Sam3Engine.from_pretrained(resolve_model_id("demo"), device="cpu") as engine:
        yield engine


@pytest.fixture(scope="module")
def demo_video_engine():
    from sam3_core.video.engine import VideoEngine

    with VideoEngine.from_pretrained(resolve_model_id("demo"), device="cpu") as engine:
        yield engine


def test_refine_from_a_box_and_a_click(demo_image_engine):
    assert refine_iou(demo_image_engine, count=6, seed=4242, prompt="box") > REFINE_BOX_MIN
    assert refine_iou(demo_image_engine, count=6, seed=4242, prompt="click") > REFINE_CLICK_MIN


def test_track_follows_the_objects_of_a_synthetic_clip(demo_video_engine):
    clips = held_out_clips(count=2, seed=4343, num_frames=6)
    assert track_j(demo_video_engine, clips, "box") > TRACK_BOX_MIN
    assert track_j(demo_video_engine, clips, "phrase") > TRACK_PHRASE_MIN


def test_track_cli_on_a_written_clip(tmp_path):
    """What a new user runs: write a clip, track one of its phrases, and compare the JSON's masks with the
    clip's ground truth (each true object of that phrase matched to its best track)."""
    from pycocotools import mask as mask_utils

    from cli.main import main
    from finetune.tracker.clips import Clip, read_clip_truth
    from finetune.tracker.evaluate import clip_j

    clip_dir = tmp_path / "clip"
    assert main(["make-synthetic-clip", str(clip_dir), "--frames", "6", "--seed", "4444"]) == 0
    names, truth = read_clip_truth(clip_dir)
    phrase = names[0]
    out = tmp_path / "tracks.json"
    assert main(["track", str(clip_dir), phrase, "--model", "demo", "--out", str(out), "--no-progress"]) == 0
    annotations = json.loads(out.read_text())["annotations"]
    assert annotations, "nothing tracked"
    blank = np.zeros(truth.shape[2:], bool)
    tracks = {a["object_id"]: (a["phrase"], np.stack([mask_utils.decode(r).astype(bool) if r else blank
                                                      for r in a["segmentations"]])) for a in annotations}
    mine = [i for i, name in enumerate(names) if name == phrase]
    scores = clip_j(Clip(np.zeros(0), [names[i] for i in mine], truth[mine]), tracks, by_phrase=True)
    assert np.mean(scores) > TRACK_PHRASE_MIN, scores


def test_transformers_own_per_object_loop_tracks_with_the_64_wide_tracker():
    """The demo tracker is as wide as its memory; without :mod:`sam3_core.video.pointers` transformers' own
    propagation fails on the second frame. Run it unbatched (transformers' loop) to cover that path."""
    from sam3_core.video.engine import VideoEngine
    from sam3_core.video.options import VideoOptions

    clips = held_out_clips(count=1, seed=4545, num_frames=4)
    with VideoEngine.from_pretrained(resolve_model_id("demo"), device="cpu",
                                     options=VideoOptions(batch_objects=False)) as engine:
        assert track_j(engine, clips, "box") > TRACK_BOX_MIN
