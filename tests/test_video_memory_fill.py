"""Hole filling before memory encoding (sam3_core.video.memory_fill) and the CPU component labelling it uses.

Memories are compared on one tracker, one batch size and one code path, so equal inputs give equal outputs;
``torch.allclose`` with ``atol=1e-6`` still states the tolerance. Memory features are bf16, so "different"
means a change far above bf16 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from video_fixtures import moving_shapes

from sam3_core.video import VideoEngine, VideoOptions, memory_fill
from sam3_core.video.cleanup import FILLED_LOGIT, component_areas, connected_components


@pytest.fixture(scope="module")
def engines(video_checkpoint):
    """One engine with the fill on (the default) and one with it off, on the same checkpoint."""
    on = VideoEngine.from_pretrained(video_checkpoint, device="cpu")
    off = VideoEngine.from_pretrained(video_checkpoint, device="cpu",
                                      options=VideoOptions(fill_holes_in_memory=False))
    yield on, off
    on.close()
    off.close()


def features(tracker, objects: int) -> torch.Tensor:
    """Random top-level frame features ``(HW, B, C)`` as the tracker's memory encoding takes them."""
    height, width = tracker.backbone_feature_sizes[-1]
    generator = torch.Generator().manual_seed(3)
    return torch.randn(height * width, 1, tracker.hidden_dim, generator=generator).expand(-1, objects, -1)


def disc_with_holes(side: int, small: int, large: int) -> tuple[torch.Tensor, tuple, tuple]:
    """``(1, 1, side, side)`` logits: a disc (+4) on background (-4) with a ``small`` and a ``large`` square hole."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    centre = side / 2
    logits = torch.where((yy - centre) ** 2 + (xx - centre) ** 2 < (0.4 * side) ** 2, 4.0, -4.0)
    small_hole = (slice(side // 4, side // 4 + small), slice(side // 2 - small // 2, side // 2 + (small + 1) // 2))
    large_hole = (slice(side // 2, side // 2 + large), slice(side // 2 - large // 2, side // 2 + (large + 1) // 2))
    logits[small_hole] = -4.0
    logits[large_hole] = -4.0
    return logits[None, None], small_hole, large_hole


def encode(tracker, masks: torch.Tensor, from_points: bool = False):
    scores = torch.full((masks.shape[0], 1), 5.0)
    with torch.inference_mode():
        return tracker._encode_new_memory(current_vision_feats=features(tracker, masks.shape[0]),
                                          pred_masks_high_res=masks, object_score_logits=scores,
                                          is_mask_from_pts=from_points)


def transformers_encode(tracker, masks: torch.Tensor, from_points: bool = False):
    """transformers' own memory encoding (the class method, bypassing any wrapper on the instance)."""
    scores = torch.full((masks.shape[0], 1), 5.0)
    with torch.inference_mode():
        return type(tracker)._encode_new_memory(tracker, current_vision_feats=features(tracker, masks.shape[0]),
                                                pred_masks_high_res=masks, object_score_logits=scores,
                                                is_mask_from_pts=from_points)


def same(a, b) -> bool:
    return all(torch.allclose(x.float(), y.float(), atol=1e-6) for x, y in zip(a, b))


@pytest.mark.parametrize("from_points", [False, True])
def test_a_small_hole_is_encoded_as_if_filled(engines, from_points):
    on, off = engines
    tracker = on.model.tracker_model
    side = memory_fill.memory_input_size(tracker)[0]
    # The tiny model's 32 px low-res masks and 128 px memory input: the default 16 px area becomes 256 px.
    holed, small, large = disc_with_holes(side, small=6, large=20)  # 36 px: filled; 400 px: kept
    filled = holed.clone()
    filled[0, 0][small] = FILLED_LOGIT
    memory_on = encode(tracker, holed, from_points)
    assert same(memory_on, encode(tracker, filled, from_points))
    assert same(memory_on, transformers_encode(tracker, filled, from_points))
    closed = holed.clone()
    closed[0, 0][small] = FILLED_LOGIT
    closed[0, 0][large] = FILLED_LOGIT  # the large hole must stay open
    assert not same(memory_on, transformers_encode(tracker, closed, from_points))
    # Off: transformers' memory of the mask as it is, which differs from the filled one.
    memory_off = encode(off.model.tracker_model, holed, from_points)
    assert same(memory_off, transformers_encode(tracker, holed, from_points))
    assert (memory_off[0].float() - memory_on[0].float()).abs().max() > 1e-2


def test_low_res_masks_are_cleaned_at_their_own_size(engines):
    """The detector step's low-res masks (32 px on the tiny model) are cleaned there with the area as it is
    (16 px), as SAM 3 does before its memory update; not resized first."""
    on, _ = engines
    tracker = on.model.tracker_model
    side = int(on.model.low_res_mask_size)
    holed, small, large = disc_with_holes(side, small=3, large=5)  # 9 px: filled; 25 px: kept
    filled = holed.clone()
    filled[0, 0][small] = FILLED_LOGIT
    memory = encode(tracker, holed)
    assert same(memory, transformers_encode(tracker, filled))
    closed = filled.clone()
    closed[0, 0][large] = FILLED_LOGIT
    assert not same(memory, transformers_encode(tracker, closed))


def test_masks_are_resized_before_filling(engines):
    """A mask at the model's input size is cleaned at the memory input size (area threshold scaled)."""
    tracker = engines[0].model.tracker_model
    image = int(tracker.image_size)
    holed, small, large = disc_with_holes(image, small=5, large=24)
    cleaned = memory_fill.clean_for_memory(tracker, holed, max_area=256)
    side = memory_fill.memory_input_size(tracker)[0]
    assert cleaned.shape == (1, 1, side, side)
    scale = side / image
    centre_small = (int((small[0].start + 2.5) * scale), int((small[1].start + 2.5) * scale))
    centre_large = (int((large[0].start + 12) * scale), int((large[1].start + 12) * scale))
    assert cleaned[0, 0][centre_small] > 0 and cleaned[0, 0][centre_large] < 0


def test_fill_is_wired_by_the_options(video_checkpoint, engines):
    on, off = engines
    assert memory_fill.is_installed(on.model.tracker_model)
    assert not memory_fill.is_installed(off.model.tracker_model)
    with VideoEngine.from_pretrained(video_checkpoint, device="cpu", options=VideoOptions(fill_hole_area=0)) as zero:
        assert not memory_fill.is_installed(zero.model.tracker_model)
    with pytest.raises(ValueError, match="low_res_side"):
        memory_fill.install(on.model.tracker_model, 16, low_res_side=0)


def track_three_clicked_objects(engine: VideoEngine, frames: np.ndarray) -> str:
    """Click three objects on frame 0 and propagate over ``frames``; returns the session id."""
    session = engine.start_session(frames)
    for point in ([24, 30], [90, 60], [60, 20]):
        engine.add_points(session, 0, [point])
    list(engine.propagate(session, 0))
    return session


def test_both_tracking_paths_encode_the_same_cleaned_masks(video_checkpoint, monkeypatch):
    """Batched and one-object-at-a-time propagation hand the same cleaned low-res masks to memory encoding."""
    frames = moving_shapes(5)
    seen: dict[bool, list[torch.Tensor]] = {}
    original = memory_fill.encode_propagated
    for batch in (True, False):
        masks: list[torch.Tensor] = []

        def spy(tracker, state, frame_idx, cleaned, scores, limit, masks=masks):
            masks.append(cleaned.clone())
            return original(tracker, state, frame_idx, cleaned, scores, limit)

        monkeypatch.setattr(memory_fill, "encode_propagated", spy)
        with VideoEngine.from_pretrained(video_checkpoint, device="cpu",
                                         options=VideoOptions(batch_objects=batch)) as engine:
            track_three_clicked_objects(engine, frames)
        seen[batch] = masks
    assert len(seen[True]) == len(seen[False]) == 5  # every frame (frame 0 reuses its clicked outputs)
    for batched, single in zip(seen[True], seen[False]):
        assert batched.shape == single.shape == (3, 32, 32)
        agree = ((batched > 0) == (single > 0)).float().mean()
        assert agree >= 0.99


def test_propagated_memories_are_encoded_from_the_cleaned_low_res_masks(video_checkpoint):
    """SAM 3's order on plain propagation: low-res masks cleaned once, memories encoded from them.

    Each propagated frame's stored memory equals transformers' encoder run on that frame's low-res tracker
    mask after :func:`fill_holes_and_remove_sprinkles` (bf16 features: atol 1e-2), and differs from the
    memory of the uncleaned mask wherever the clean-up changed something.
    """
    from sam3_core.video.cleanup import fill_holes_and_remove_sprinkles
    from sam3_core.video.steps import cache_frame_features

    frames = moving_shapes(4)
    with VideoEngine.from_pretrained(video_checkpoint, device="cpu",
                                     options=VideoOptions(keep_all_state=True)) as engine:
        session = track_three_clicked_objects(engine, frames)
        state = engine._sessions.get(session).state
        tracker = engine.model.tracker_model
        area = engine.settings.fill_hole_area
        checked = changed = 0
        with torch.inference_mode():
            for frame_idx in range(1, 4):
                cache_frame_features(engine.model, state, frame_idx)  # the session keeps a few frames' features
                feats = tracker._prepare_vision_features(state, frame_idx, 1)[0][-1]
                for obj_idx in range(3):
                    stored = state.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"][frame_idx]
                    raw = stored["pred_masks"].float()  # (1, 1, 32, 32) as the tracker gave it
                    cleaned = fill_holes_and_remove_sprinkles(raw[:, 0], area)[:, None]
                    scores = stored["object_score_logits"].reshape(1, 1, 1)

                    def encoded(masks, scores=scores, feats=feats):
                        return type(tracker)._encode_new_memory(tracker, current_vision_feats=feats,
                                                                pred_masks_high_res=masks,
                                                                object_score_logits=scores,
                                                                is_mask_from_pts=False)[0]

                    assert torch.allclose(stored["maskmem_features"].float(), encoded(cleaned).float(), atol=1e-2)
                    checked += 1
                    if not torch.equal(cleaned, raw):
                        changed += 1
                        assert not torch.allclose(stored["maskmem_features"].float(), encoded(raw).float(),
                                                  atol=1e-2)
        assert checked == 9
        assert changed >= 1  # the random-weight masks do have holes or specks to clean


@pytest.mark.parametrize("density", [0.2, 0.5, 0.8])
def test_component_areas_match_the_torch_labelling(density):
    rng = np.random.default_rng(int(density * 10))
    masks = torch.from_numpy(rng.random((5, 37, 29)) < density)
    assert torch.equal(component_areas(masks), connected_components(masks)[1])
    empty = torch.zeros(0, 4, 4, dtype=torch.bool)
    assert component_areas(empty).shape == (0, 4, 4)


@pytest.mark.parametrize("pad", [(0, 0, 0, 0), (0, 2, 0, 1), (7, 0, 0, 13), (20, 20, 20, 20)])
def test_box_labelling_matches_whole_mask_labelling(pad):
    """The CPU clean-up (all masks at once, inside their common box) equals whole-mask labelling: objects with
    holes and specks, objects touching the border, a frame-filling object (the whole-mask fallback), empty and
    full masks; ``pad`` (top, bottom, left, right) puts them in a larger frame, so the box is smaller than it
    and background pieces reach past the box."""
    from sam3_core.video.cleanup import _fill_by_boxes, _fill_by_labelling

    rng = np.random.default_rng(5)
    side = 40
    yy, xx = np.mgrid[:side, :side]
    masks = []
    for _ in range(24):
        (cy, cx), radius = rng.uniform(-5, side + 5, 2), rng.uniform(3, 30)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        masks.append(blob ^ (rng.random((side, side)) < rng.uniform(0.0, 0.15)))  # holes and specks
    masks += [np.zeros((side, side), bool), np.ones((side, side), bool)]
    frame_filling = np.zeros((side, side), bool)
    frame_filling[:37] = True  # 120 background pixels below it, only 40 of them inside its box + 1 px
    frame_filling[5:7, 5:7] = False
    masks.append(frame_filling)
    strip = np.ones((side, side), bool)
    strip[side - 1] = False  # a 40 px background strip, outside the box: a hole for max_area >= 40
    masks.append(strip)
    top, bottom, left, right = pad
    stack = np.pad(np.stack(masks), ((0, 0), (top, bottom), (left, right)))
    logits = torch.from_numpy(np.where(stack, 2.0, -2.0).astype(np.float32))
    for area in (1, 6, 30, 60):
        expected = _fill_by_labelling(logits, area)
        assert torch.equal(_fill_by_boxes(logits, area), expected)
    assert not torch.equal(expected, logits)  # the masks did have something to clean
    for index in (0, 3, len(masks) - 1):  # one mask alone (another box) gives the same as within the stack
        alone = logits[index:index + 1]
        assert torch.equal(_fill_by_boxes(alone, 30), _fill_by_labelling(alone, 30))
