"""Batched multi-object tracking against transformers' one-object-at-a-time loop, and memory bounds.

Parity tolerance: every object on every frame must have a mask IoU >= 0.99 between the two paths (two empty
masks count as IoU 1), the same objects on the same frames, and tracker scores within 1e-4. Batched matrix
products may round differently from one-object ones, so masks are never compared bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from video_fixtures import moving_shapes

from sam3_core.errors import UsageError
from sam3_core.video import VideoEngine, VideoOptions
from sam3_core.video import batched as batched_module
from sam3_core.video.retention import OFFLOADED_KEYS, RetentionPolicy, trim_session

MIN_IOU = 0.99
SCORE_ATOL = 1e-4
CLICKS = [[20, 20], [60, 20], [100, 20], [20, 70], [60, 70], [100, 70]]


def open_engine(checkpoint: str, batch: bool, **options) -> VideoEngine:
    return VideoEngine.from_pretrained(checkpoint, device="cpu",
                                       options=VideoOptions(batch_objects=batch, **options))


def record(results, table: dict, tag: str = "") -> None:
    for result in results:
        for i, object_id in enumerate(result.object_ids):
            table[(tag, result.frame_index, object_id)] = (result.masks[i], float(result.tracker_scores[i]))


def clicks_script(engine: VideoEngine, frames: np.ndarray) -> dict:
    """Six clicked objects; on frame 4 a box adds a seventh and the third is removed; then both directions."""
    session = engine.start_session(frames)
    for point in CLICKS:
        engine.add_points(session, 0, [point])
    table: dict = {}
    stream = engine.propagate(session, 0, max_frames=9)
    for result in stream:
        record([result], table, "first")
        if result.frame_index == 4:  # mid-propagation: the stream goes on with the new object set
            engine.add_box(session, 4, [30, 40, 70, 80])
            engine.remove_object(session, engine.session_info(session).object_ids[2])
    record(engine.propagate(session, 6, "both"), table, "second")
    engine.close_session(session)
    return table


def assert_same_tracks(batched: dict, single: dict) -> None:
    assert batched.keys() == single.keys()
    worst = 1.0
    for key, (mask, score) in batched.items():
        other, other_score = single[key]
        union = np.logical_or(mask, other).sum()
        iou = 1.0 if union == 0 else np.logical_and(mask, other).sum() / union
        worst = min(worst, iou)
        assert iou >= MIN_IOU, f"{key}: IoU {iou:.4f}"
        assert abs(score - other_score) <= SCORE_ATOL, key
    assert worst >= MIN_IOU


def pass_sizes(engine: VideoEngine) -> tuple[list[int], object]:
    """Objects per mask-decoder call (one call per batched pass, one per object on transformers' own path)."""
    sizes: list[int] = []
    hook = engine.model.tracker_model.mask_decoder.register_forward_hook(
        lambda module, args, output: sizes.append(int(output[0].shape[0])))
    return sizes, hook


def test_clicked_objects_match_the_per_object_path(video_checkpoint):
    frames = moving_shapes(12)
    with open_engine(video_checkpoint, True, max_objects_per_pass=4) as fast, \
            open_engine(video_checkpoint, False) as slow:
        sizes, hook = pass_sizes(fast)
        batched = clicks_script(fast, frames)
        hook.remove()
        single = clicks_script(slow, frames)
    assert_same_tracks(batched, single)
    assert any(np.asarray(mask).any() for mask, _ in batched.values())  # not a comparison of empty masks
    assert max(sizes) == 4 and min(sizes) >= 1  # objects shared passes, at most 4 per pass


def test_phrase_objects_match_the_per_object_path(video_checkpoint):
    """Detector-created objects (mask prompts, reconditioning, memory re-encoding) on both paths."""
    frames = moving_shapes(10)
    options = dict(score_threshold=0.05, new_object_threshold=0.1, hotstart_delay=2)
    tables = []
    for batch in (True, False):
        with open_engine(video_checkpoint, batch, **options) as engine:
            session = engine.start_session(frames)
            engine.add_text_prompts(session, ["red disc", "green disc"])
            engine.add_points(session, 0, [[60, 20]])
            table: dict = {}
            record(engine.propagate(session, 0), table)
            tables.append(table)
    assert len({key[2] for key in tables[0]}) >= 2
    assert_same_tracks(*tables)


def test_objects_added_later_join_the_shared_pass(video_checkpoint):
    """An object added on frame 3 runs apart while its memory is shorter, then in the same pass as the others."""
    with open_engine(video_checkpoint, True, max_objects_per_pass=None) as engine:
        session = engine.start_session(moving_shapes(16))
        for point in CLICKS[:3]:
            engine.add_points(session, 0, [point])
        per_frame: dict[int, list[int]] = {}
        sizes, hook = pass_sizes(engine)
        for result in engine.propagate(session, 0):
            per_frame[result.frame_index] = list(sizes)
            sizes.clear()
            if result.frame_index == 3:
                engine.add_points(session, 3, [[60, 70]])
        hook.remove()
    assert per_frame[2] == [3]
    assert sorted(per_frame[5]) == [1, 3]  # the new object's memory window is not full yet
    assert per_frame[15] == [4]  # one pass for all four


def test_pass_size_limit_and_switching_paths(video_checkpoint):
    with open_engine(video_checkpoint, True, max_objects_per_pass=2) as engine:
        tracker = engine.model.tracker_model
        assert batched_module.is_installed(tracker)
        session = engine.start_session(moving_shapes(6))
        for point in CLICKS[:5]:
            engine.add_points(session, 0, [point])
        sizes, hook = pass_sizes(engine)
        list(engine.propagate(session, 0))
        hook.remove()
        assert sizes and max(sizes) == 2
        batched_module.uninstall(tracker)
        assert not batched_module.is_installed(tracker)
    with pytest.raises(UsageError, match="max_objects_per_pass"):
        VideoOptions(max_objects_per_pass=0)


def test_memory_stays_flat_with_many_objects(video_checkpoint):
    """300 frames, 16 objects: the tensors a session holds stop growing once the window is full."""
    with open_engine(video_checkpoint, True) as engine:
        session = engine.start_session(moving_shapes(300, height=48, width=64))
        for i in range(16):
            engine.add_points(session, 0, [[4 + 8 * (i % 8), 12 + 24 * (i // 8)]])
        held = {}
        for result in engine.propagate(session, 0):
            if result.frame_index in (60, 299):
                held[result.frame_index] = engine.session_info(session).held
        assert len(engine.session_info(session).object_ids) == 16
    assert held[299].count == held[60].count
    assert held[299].bytes == held[60].bytes


def test_cold_memories_are_offloaded(video_checkpoint):
    """Outputs kept only for the start frame's neighbourhood move to the offload device; hot ones stay."""
    with open_engine(video_checkpoint, True) as engine:
        session = engine.start_session(moving_shapes(14, height=48, width=64))
        engine.add_points(session, 0, [[12, 15]])
        engine.add_points(session, 0, [[40, 30]])
        list(engine.propagate(session, 0))
        state = engine._sessions.get(session).state
        policy = RetentionPolicy(window=engine.policy.window, max_cond_frames=engine.policy.max_cond_frames,
                                 hotstart_delay=0, offload_device=torch.device("meta"))
        assert engine.policy.offload_device is None  # nothing to offload to on a CPU engine
        trim_session(state, 13, policy, anchors=(0,))
        for outputs in state.output_dict_per_obj.values():
            for frame_idx, stored in outputs["non_cond_frame_outputs"].items():
                cold = abs(frame_idx - 13) > policy.window
                for key in OFFLOADED_KEYS:
                    assert (stored[key].device.type == "meta") == cold, (frame_idx, key)
                assert stored["object_pointer"].device.type == "cpu"
            assert all(stored["maskmem_features"].device.type == "cpu"
                       for stored in outputs["cond_frame_outputs"].values())
            assert any(abs(t - 13) > policy.window for t in outputs["non_cond_frame_outputs"])


def test_cache_sized_sub_passes_match_the_per_object_path(video_checkpoint, monkeypatch):
    """On CPU, memory attention and memory encoding split a pass into sub-passes of a few objects (so their
    activations fit the caches); with a budget of two objects' worth, results still match one at a time."""
    frames = moving_shapes(12)
    with open_engine(video_checkpoint, False) as slow:
        single = clicks_script(slow, frames)
    with open_engine(video_checkpoint, True, max_objects_per_pass=None) as fast:
        tracker = fast.model.tracker_model
        first = tracker.memory_attention.layers[0]
        tokens = int(np.prod(tracker.backbone_feature_sizes[-1]))
        monkeypatch.setattr(batched_module, "CPU_CHUNK_ELEMENTS", 2 * tokens * first.linear1.out_features)
        attention, encoding = [], []
        # The keys' projection runs once per sub-pass (the shared queries are projected once per frame).
        hooks = [first.cross_attn_image.k_proj.register_forward_hook(
                     lambda module, args, output: attention.append(int(args[0].shape[0]))),
                 tracker.memory_encoder.register_forward_hook(
                     lambda module, args, output: encoding.append(int(args[0].shape[0])))]
        batched = clicks_script(fast, frames)
        for hook in hooks:
            hook.remove()
    assert_same_tracks(batched, single)
    assert max(attention) == 2 and max(encoding) <= 2  # six objects ran in sub-passes of at most two
    assert batched_module.cache_chunk(torch.device("cuda"), 10**9, 6) == 6  # no split off the CPU
