"""YouTube-VIS-style JSON and overlay videos from per-frame results (no model needed)."""

from __future__ import annotations

import json

import numpy as np
import torch
from video_fixtures import HEIGHT, WIDTH, moving_shapes, shape_centres

from sam3_core.postprocess import rle_to_mask
from sam3_core.video.frames import open_video
from sam3_core.video.outputs import VisJsonWriter, frame_masks, pick_codec, write_overlay_video
from sam3_core.video.results import RawFrame, build_frame_result

NUM_FRAMES = 6


def disc_result(index: int, with_clicked: bool) -> object:
    """A FrameResult with the first shape as object 3 ("red disc") and, optionally, object 7 (clicked)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    (cx, cy), (gx, gy), _ = shape_centres(index)
    red = (xx - cx) ** 2 + (yy - cy) ** 2 <= 14**2
    green = (xx - gx) ** 2 + (yy - gy) ** 2 <= 10**2
    ids, masks = [3], [red]
    if with_clicked:
        ids.append(7)
        masks.append(green)
    logits = torch.where(torch.from_numpy(np.stack(masks)), 5.0, -5.0)
    raw = RawFrame(index, ids, logits, scores={3: 0.8, 7: 1.0}, tracker_scores={3: 0.9, 7: 0.95})
    return build_frame_result(raw, hidden=set(), groups={3: 0, 7: -1}, phrases={0: "red disc"},
                              frame_size=(HEIGHT, WIDTH), fill_hole_area=16)


def test_build_frame_result_shapes_and_boxes():
    result = disc_result(0, with_clicked=True)
    assert result.object_ids == [3, 7] and result.phrases == ["red disc", None]
    assert result.masks.shape == (2, HEIGHT, WIDTH) and result.masks.dtype == bool
    x1, y1, x2, y2 = result.boxes[0]
    (cx, cy), *_ = shape_centres(0)
    assert abs((x1 + x2) / 2 - cx) <= 1 and abs((y1 + y2) / 2 - cy) <= 1
    assert np.array_equal(rle_to_mask(result.rles[1]), result.masks[1])
    assert result.scores.tolist() == [np.float32(0.8), np.float32(1.0)]
    encoded = json.loads(json.dumps(result.to_json()))
    assert [o["object_id"] for o in encoded["objects"]] == [3, 7]


def test_hidden_and_empty_objects_are_dropped():
    raw = RawFrame(0, [1, 2], torch.stack([torch.full((8, 8), 3.0), torch.full((8, 8), -3.0)]), {}, {})
    result = build_frame_result(raw, hidden={1}, groups={}, phrases={}, frame_size=(16, 16), fill_hole_area=0)
    assert result.object_ids == [] and result.masks.shape == (0, 16, 16)


def test_vis_json_document(tmp_path):
    source = open_video(moving_shapes(NUM_FRAMES))
    writer = VisJsonWriter(source, video_name="shapes")
    for index in reversed(range(NUM_FRAMES)):  # backward propagation order is fine
        writer.add(disc_result(index, with_clicked=index >= 2))
    document = json.loads(writer.write(tmp_path / "out.json").read_text())
    video = document["videos"][0]
    assert (video["length"], video["height"], video["width"]) == (NUM_FRAMES, HEIGHT, WIDTH)
    assert len(video["file_names"]) == NUM_FRAMES
    assert document["categories"] == [{"id": 1, "name": "red disc"}, {"id": 2, "name": "object"}]
    red, clicked = document["annotations"]
    assert (red["object_id"], red["category_id"], red["phrase"]) == (3, 1, "red disc")
    assert all(s is not None for s in red["segmentations"])
    assert clicked["segmentations"][:2] == [None, None] and clicked["bboxes"][0] is None
    assert all(len(a["segmentations"]) == len(a["bboxes"]) == len(a["areas"]) == NUM_FRAMES for a in (red, clicked))
    _, _, w, h = red["bboxes"][0]
    assert w > 0 and h > 0 and red["areas"][0] == int(rle_to_mask(red["segmentations"][0]).sum())
    masks, ids = frame_masks(document, 3)
    assert ids == [3, 7] and masks.shape == (2, HEIGHT, WIDTH)


def test_overlay_video_is_readable(tmp_path):
    frames = moving_shapes(NUM_FRAMES, height=HEIGHT - 1, width=WIDTH - 1)  # odd size: padded to even
    source = open_video(frames)
    document = {"annotations": []}
    path = write_overlay_video(source, document, tmp_path / "overlay.mp4", fps=5)
    back = open_video(path)
    assert back.num_frames == NUM_FRAMES and (back.height, back.width) == (HEIGHT, WIDTH)
    assert pick_codec() in ("libx264", "mpeg4")


def test_overlay_video_draws_masks(tmp_path):
    source = open_video(moving_shapes(NUM_FRAMES))
    writer = VisJsonWriter(source)
    for index in range(NUM_FRAMES):
        writer.add(disc_result(index, with_clicked=False))
    path = write_overlay_video(source, writer.document(), tmp_path / "overlay.mp4", codec="mpeg4")
    back = open_video(path)
    assert back.num_frames == NUM_FRAMES
    difference = np.abs(back.frame(2).astype(int) - source.frame(2).astype(int)).mean(axis=2)
    (cx, cy), *_ = shape_centres(2)
    assert difference[int(cy) - 20:int(cy) + 20, int(cx) - 20:int(cx) + 20].mean() > difference.mean()
