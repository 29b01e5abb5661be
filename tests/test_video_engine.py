"""VideoEngine on the tiny random SAM 3: sessions, phrases, clicks, propagation, memory bounds, errors.

Random weights make no meaningful masks, so these tests check the plumbing (ids, frames, order, state
kept, errors) with detection thresholds low enough for the random detector to find objects.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch
from video_fixtures import HEIGHT, WIDTH, moving_shapes, write_frame_folder, write_mp4

from sam3_core.errors import CheckpointError, PromptError, UsageError, VideoError
from sam3_core.video import FrameResult, VideoEngine, VideoOptions
from sam3_core.video.frames import open_video

LOW = dict(score_threshold=0.05, new_object_threshold=0.1, hotstart_delay=2)


@pytest.fixture(scope="module")
def engine(video_checkpoint):
    options = VideoOptions(max_sessions=3, **LOW)
    with VideoEngine.from_pretrained(video_checkpoint, device="cpu", options=options) as eng:
        yield eng


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("clips")
    frames = moving_shapes(12)
    return {"mp4": str(write_mp4(frames, folder / "clip.mp4", gop=5)),
            "folder": str(write_frame_folder(frames, folder / "frames")), "frames": frames}


@pytest.fixture
def session(engine, videos):
    session_id = engine.start_session(videos["mp4"])
    yield session_id
    if session_id in engine.session_ids():
        engine.close_session(session_id)


def indices(results: list[FrameResult]) -> list[int]:
    return [r.frame_index for r in results]


def test_session_life_cycle(engine, videos):
    mp4 = engine.start_session(videos["mp4"])
    folder = engine.start_session(videos["folder"])
    assert set(engine.session_ids()) >= {mp4, folder}
    for session_id in (mp4, folder):
        info = engine.session_info(session_id)
        assert (info.num_frames, info.frame_size, info.object_ids) == (12, (HEIGHT, WIDTH), [])
    engine.close_session(mp4)
    engine.close_session(folder)
    assert mp4 not in engine.session_ids()
    with pytest.raises(VideoError, match="unknown video session"):
        engine.add_text_prompts(mp4, ["cat"])


def test_several_phrases_share_each_frame_encoding(engine, session):
    assert engine.add_text_prompts(session, ["red disc", "green disc"]) == [0, 1]
    assert engine.add_text_prompts(session, "red disc") == [0]  # known phrase: same prompt
    calls = []
    hook = engine.model.detector_model.vision_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        results = list(engine.propagate(session, 0, max_frames=5))
    finally:
        hook.remove()
    assert indices(results) == [0, 1, 2, 3, 4]
    assert len(calls) == 5  # one encoding per frame for both phrases and the tracker
    found = {p for r in results for p in r.phrases}
    assert found == {"red disc", "green disc"}
    for result in results:
        assert result.masks.shape[1:] == (HEIGHT, WIDTH) and len(result.rles) == len(result)
        assert result.boxes.shape == (len(result), 4) and result.scores.shape == (len(result),)
    state = engine._sessions.get(session).state
    assert len(state.obj_id_to_tracker_score_frame_wise) <= 1 and len(state.suppressed_obj_ids) <= 1


def test_points_add_and_refine_an_object(engine, session):
    engine.add_text_prompts(session, ["disc"])
    update = engine.add_points(session, 3, [[24, 30]])
    assert update.frame.frame_index == 3
    object_id = update.object_id
    refined = engine.add_points(session, 3, [[60, 60]], labels=[0], object_id=object_id)
    assert refined.object_id == object_id
    state = engine._sessions.get(session).state
    clicks = state.point_inputs_per_obj[state.obj_id_to_idx(object_id)][3]
    expected = torch.tensor([[24 * 112 / WIDTH, 30 * 112 / HEIGHT], [60 * 112 / WIDTH, 60 * 112 / HEIGHT]])
    torch.testing.assert_close(clicks["point_coords"].view(-1, 2), expected)
    assert clicks["point_labels"].view(-1).tolist() == [1, 0]
    results = list(engine.propagate(session, 3, max_frames=9))  # past the hot-start checks
    assert indices(results) == list(range(3, 12))
    assert object_id in engine.session_info(session).object_ids  # never removed by detector heuristics
    assert all(r.phrases[r.object_ids.index(object_id)] is None for r in results if object_id in r.object_ids)


def test_box_starts_an_object_and_clicks_follow_it(engine, session):
    update = engine.add_box(session, 2, [10, 10, 40, 45])
    again = engine.add_points(session, 2, [[20, 20]], object_id=update.object_id)
    state = engine._sessions.get(session).state
    labels = state.point_inputs_per_obj[state.obj_id_to_idx(update.object_id)][2]["point_labels"]
    assert labels.view(-1).tolist() == [2, 3, 1] and again.object_id == update.object_id
    second = engine.add_box(session, 5, [60, 40, 100, 80])
    assert second.object_id != update.object_id
    assert engine.session_info(session).object_ids == [update.object_id, second.object_id]


@pytest.mark.parametrize(("start", "direction", "max_frames", "expected"), [
    (3, "forward", 4, [3, 4, 5, 6]),
    (6, "backward", 4, [6, 5, 4, 3]),
    (5, "both", 3, [5, 6, 7, 4, 3]),
    (9, "forward", None, [9, 10, 11]),
    (1, "backward", None, [1, 0]),
])
def test_propagation_directions_with_clicks(engine, session, start, direction, max_frames, expected):
    engine.add_points(session, start, [[24, 30]])
    results = list(engine.propagate(session, start, direction, max_frames))
    assert indices(results) == expected


def test_propagation_directions_with_phrases(engine, session):
    engine.add_text_prompts(session, ["red disc"])
    assert indices(engine.propagate(session, 4, "both", 3)) == [4, 5, 6, 3, 2]


def test_default_start_is_the_first_prompted_frame(engine, session):
    engine.add_points(session, 7, [[24, 30]])
    assert indices(engine.propagate(session, max_frames=2)) == [7, 8]


def test_remove_object(engine, session):
    first = engine.add_points(session, 0, [[24, 30]]).object_id
    second = engine.add_points(session, 0, [[90, 60]]).object_id
    engine.remove_object(session, first)
    assert engine.session_info(session).object_ids == [second]
    assert all(first not in r.object_ids for r in engine.propagate(session, 0, max_frames=3))
    with pytest.raises(VideoError, match="unknown object"):
        engine.remove_object(session, first)


def test_bad_inputs_raise_clear_errors(engine, session, tmp_path):
    garbage = tmp_path / "bad.mp4"
    garbage.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(VideoError, match="cannot open"):
        engine.start_session(str(garbage))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no image frames"):
        engine.start_session(str(tmp_path / "empty"))
    with pytest.raises(VideoError, match="out of range"):
        engine.add_points(session, 12, [[10, 10]])
    engine.add_text_prompts(session, ["disc"])
    with pytest.raises(VideoError, match="out of range"):
        engine.propagate(session, -1)
    with pytest.raises(VideoError, match="unknown video session"):
        engine.propagate("no-such-session")
    with pytest.raises(VideoError, match="unknown object 99"):
        engine.add_points(session, 0, [[10, 10]], object_id=99)
    with pytest.raises(PromptError, match="outside"):
        engine.add_points(session, 0, [[WIDTH + 5, 10]])
    with pytest.raises(PromptError, match="x2 > x1"):
        engine.add_box(session, 0, [30, 10, 20, 40])
    with pytest.raises(PromptError, match="empty"):
        engine.add_text_prompts(session, ["  "])
    with pytest.raises(UsageError, match="direction"):
        engine.propagate(session, 0, "sideways")


def test_nothing_to_track(engine, session):
    with pytest.raises(PromptError, match="nothing to track"):
        engine.propagate(session)


def test_session_cap_and_idle_timeout(video_checkpoint, videos):
    now = [0.0]
    options = VideoOptions(max_sessions=2, idle_timeout_s=60)
    engine = VideoEngine.from_pretrained(video_checkpoint, device="cpu", options=options)
    engine._sessions._clock = lambda: now[0]
    first = engine.start_session(videos["frames"])
    engine.start_session(videos["frames"])
    with pytest.raises(UsageError, match="max_sessions=2"):
        engine.start_session(videos["frames"])
    now[0] = 30.0
    engine.session_info(first)  # keeps the first one alive
    now[0] = 75.0               # the second has been idle 75 s
    third = engine.start_session(videos["frames"])
    assert set(engine.session_ids()) == {first, third}
    now[0] = 200.0
    with pytest.raises(VideoError, match="idle"):
        engine.session_info(first)
    assert engine.session_ids() == []


def test_memory_stays_flat_on_a_long_video(engine):
    """One tracked object: the tensors a session holds stop growing once the window is full.

    The tiny model keeps a window of 5 frames (``max(num_maskmem, max_object_pointers_in_encoder) + 1``), so
    60 frames are 12 windows; the held tensors are counted at three frames far past the first window."""
    session = engine.start_session(moving_shapes(60, height=48, width=64))
    engine.add_box(session, 0, [30, 5, 50, 25])
    held = {}
    for result in engine.propagate(session, 0):
        if result.frame_index in (20, 40, 59):
            held[result.frame_index] = engine.session_info(session).held
    engine.close_session(session)
    assert held[20].count == held[40].count == held[59].count
    assert held[20].bytes == held[40].bytes == held[59].bytes


def test_without_trimming_memory_grows(video_checkpoint):
    """The same measure on transformers' own behaviour (keep every frame): it grows with the video."""
    options = VideoOptions(keep_all_state=True)
    with VideoEngine.from_pretrained(video_checkpoint, device="cpu", options=options) as engine:
        session = engine.start_session(moving_shapes(24, height=48, width=64))
        engine.add_points(session, 0, [[12, 15]])
        held = {}
        for result in engine.propagate(session, 0):
            if result.frame_index in (8, 23):
                held[result.frame_index] = engine.session_info(session).held
    assert held[23].bytes > 1.5 * held[8].bytes


def test_folder_and_mp4_give_the_same_video(videos):
    mp4, folder = open_video(videos["mp4"]), open_video(videos["folder"])
    assert (mp4.num_frames, mp4.height, mp4.width) == (folder.num_frames, folder.height, folder.width)
    assert np.abs(mp4.frame(5).astype(int) - folder.frame(5).astype(int)).mean() < 16


def test_checkpoint_without_video_weights(tmp_path):
    with pytest.raises(CheckpointError):
        VideoEngine.from_pretrained(str(tmp_path / "nothing-here"), device="cpu")


def test_cli_track(video_checkpoint, videos, tmp_path, caplog):
    from cli.main import main

    caplog.set_level(logging.INFO, logger="sam3_agent.cli")
    out, overlay = tmp_path / "track.json", tmp_path / "track.mp4"
    code = main(["track", videos["mp4"], "red disc", "green disc", "--model", video_checkpoint, "--out", str(out),
                 "--overlay", str(overlay), "--max-frames", "4", "--threshold", "0.05", "--new-threshold", "0.1",
                 "--device", "cpu"])
    assert code == 0
    document = json.loads(out.read_text())
    assert document["videos"][0]["length"] == 12
    assert {c["name"] for c in document["categories"]} <= {"red disc", "green disc"}
    for annotation in document["annotations"]:
        assert len(annotation["segmentations"]) == 12
        assert all(s is None for s in annotation["segmentations"][4:])
    assert open_video(overlay).num_frames == 12
    # progress (plain lines: stderr is not a terminal under pytest): frames done, rate and objects
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tracking: ")]
    assert re.fullmatch(r"tracking: 4/4 frame, [0-9.]+ frame/s, [0-9]+ objects done", line), line
    assert main(["track", str(tmp_path / "missing.mp4"), "cat", "--model", video_checkpoint,
                 "--out", str(out), "--device", "cpu"]) == 2
