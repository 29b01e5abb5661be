"""Stored clip conversations without a model: masklet tracks as JSON, what ``max_count``/idle do when the state file
keeps the conversations (they leave memory, they are not deleted), the clip folder's bytes in retention's size
limit, and ids that could name a path outside the clip folder."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent.graph import build_graph
from agent.masklets import FrameMask, MaskletStore, Track, track_iou
from sam3_core.mask_encoding import masks_to_rle
from serving.chat.clips import ClipChats, StoredClips
from serving.chat.retention import Retention, clip_folder
from serving.chat.store import ChatStore
from serving.clips import ClipPlan
from serving.http.errors import ApiError

WIDTH, HEIGHT = 32, 24


def _track(phrase: str, x: int) -> Track:
    masks = np.zeros((3, HEIGHT, WIDTH), bool)
    for frame in range(3):
        masks[frame, 4:12, x + frame:x + frame + 6] = True
    frames = {frame * 2: FrameMask(rle, (float(x + frame), 4.0, float(x + frame + 6), 12.0), int(masks[frame].sum()))
              for frame, rle in enumerate(masks_to_rle(masks))}
    return Track(phrase, 0.5 + x / 100, frames, session_id="s-1", object_id=x, next_frame=None)


def test_masklet_tracks_round_trip_through_json():
    store = MaskletStore()
    store.put(1, _track("disc", 2))
    store.put(4, _track("square", 10))
    restored = MaskletStore.from_json(json.loads(json.dumps(store.to_json())))
    for masklet_id in (1, 4):
        before, after = store.get(masklet_id), restored.get(masklet_id)
        assert after is not None and after.session_id is None  # sessions end with the query
        assert (after.phrase, after.score, after.object_id, after.next_frame) == \
            (before.phrase, before.score, before.object_id, before.next_frame)
        assert after.present() == before.present() == [0, 2, 4]
        assert track_iou(before, after, 6) == 1.0 and after.frames[2].box == before.frames[2].box
    assert restored.get(2) is None
    with pytest.raises((KeyError, TypeError, ValueError)):
        MaskletStore.from_json({"1": {"phrase": "x", "score": 1.0, "object_id": 1, "next_frame": None,
                                      "frames": {"0": {"rle": {"size": [2, 2], "counts": 5}, "box": [0, 0, 1, 1],
                                                       "area": 1}}}})


def _upload(folder: Path) -> tuple[Path, ClipPlan]:
    """An upload folder as the clip routes leave it for a clip sampled every 2nd frame."""
    (folder / "frames").mkdir(parents=True)
    (folder / "upload.mp4").write_bytes(b"\0" * 5000)
    for index in (0, 2, 4):
        (folder / "frames" / f"{index:06d}.png").write_bytes(b"p" * 100)
    return folder, ClipPlan(str(folder / "frames"), 6, 10.0, WIDTH, HEIGHT, 2, (0, 2, 4), "clip.mp4")


def test_stored_conversations_leave_memory_but_stay_stored(tmp_path):
    store = ChatStore(str(tmp_path / "state.sqlite"))
    root = tmp_path / "state.sqlite.clips"
    saver = InMemorySaver()
    retention = Retention(store, saver, 3600.0, 1 << 30, 60.0, clip_root=root)
    chats = ClipChats(1, 60.0, StoredClips(store, retention, build_graph(saver), root))

    async def scenario() -> None:
        upload_a, plan_a = _upload(tmp_path / "up-a")
        first = await chats.add("a.mp4", upload_a, plan_a)
        assert not upload_a.exists() and first.folder == root / first.id
        assert sorted(p.name for p in first.folder.rglob("*")) == ["000000.png", "000002.png", "000004.png", "frames"]
        assert store.clip(first.id).folder_bytes == 300  # the sampled frames only: the upload was dropped
        second = await chats.add("b.mp4", *_upload(tmp_path / "up-b"))
        assert len(chats) == 1 and first.folder.is_dir() and store.clip(first.id) is not None  # left memory only
        second.store = MaskletStore()
        second.store.put(3, _track("disc", 2))
        answer = {"status": "answered", "masklet_ids": [3]}
        assert await chats.record(second, "the disc", answer) == 0 and answer["turn_index"] == 0
        again = await chats.find(first.id)  # read back; the other one makes room
        assert again.plan == first.plan and again.turns == [] and again.created == first.created
        async with again.lock:  # the only one in memory is busy: no room for another
            with pytest.raises(ApiError) as busy:
                await chats.find(second.id)
            assert busy.value.status == 429
        back = await chats.find(second.id)
        assert back.turns == [{"index": 0, "message": "the disc", "answer": answer}]
        assert back.next_store().get(3).present() == [0, 2, 4]  # the tracks came back with it
        assert await chats.sweep(now=time.monotonic() + 3600) == [second.id] and len(chats) == 0
        await chats.close()
        assert first.folder.is_dir() and second.folder.is_dir()  # idle and shutdown only unload
        assert await chats.forget(first.id) and not first.folder.exists() and store.clip(first.id) is None
        assert not await chats.forget(first.id)
        with pytest.raises(ApiError) as gone:
            await chats.find(first.id)
        assert gone.value.status == 404

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_clip_folder_bytes_count_in_the_size_limit(tmp_path):
    store = ChatStore(str(tmp_path / "state.sqlite"))
    try:
        big, small = "clip-" + "a" * 32, "clip-" + "b" * 32
        store.create_clip(big, "big.mp4", {"video": "upload.mp4"}, 5000)
        store.create_clip(small, "small.mp4", {"video": "upload.mp4"}, 10)
        assert store.expired(3600.0, 6000) == []
        assert store.expired(3600.0, 4000) == [big]  # the least recently used goes until the rest fit
    finally:
        store.close()


def test_ids_never_name_a_path_outside_the_clip_folder(tmp_path):
    with pytest.raises(ValueError):
        clip_folder(tmp_path, "../outside")
    outside = tmp_path / "outside"
    outside.mkdir()
    store = ChatStore(str(tmp_path / "state.sqlite"))
    retention = Retention(store, None, 3600.0, 1 << 30, 60.0, clip_root=tmp_path / "clips")
    try:
        assert asyncio.run(retention.forget("../outside")) is False
        assert outside.is_dir()
    finally:
        store.close()


def test_a_clip_alone_over_the_size_limit_is_refused(tmp_path):
    store = ChatStore(str(tmp_path / "state.sqlite"))
    root = tmp_path / "clips"
    saver = InMemorySaver()
    retention = Retention(store, saver, 3600.0, 200, 60.0, clip_root=root)  # the frames alone take 300 bytes
    chats = ClipChats(2, 60.0, StoredClips(store, retention, build_graph(saver), root))
    try:
        with pytest.raises(ApiError) as refused:
            asyncio.run(chats.add("a.mp4", *_upload(tmp_path / "up")))
        assert refused.value.status == 413 and refused.value.code == "clip_over_retention_limit"
        assert len(chats) == 0 and not any(root.iterdir())  # retention took the row and the folder
    finally:
        store.close()


def test_clip_folders_without_a_stored_conversation_are_swept(tmp_path):
    """A folder left by a server stopped between moving a clip in and writing its row goes with the next sweep
    once it is old; a young one (a conversation being created), a stored one and other names stay."""
    import os

    from serving.chat.retention import LITTER_GRACE_S

    root = tmp_path / "state.sqlite.clips"
    store = ChatStore(str(tmp_path / "state.sqlite"))
    retention = Retention(store, None, 3600.0, 1 << 30, 60.0, clip_root=root)
    old = time.time() - LITTER_GRACE_S - 5
    folders = {name: clip_folder(root, f"clip-{name * 32}") for name in "abc"}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "frame.jpg").write_bytes(b"x" * 10)
    other = root / "notes"
    other.mkdir()
    for path in (folders["a"], folders["b"], other):
        os.utime(path, (old, old))
    store.create_clip(folders["b"].name, "stored.mp4", {"video": "v.mp4"}, 10)
    try:
        assert asyncio.run(retention.sweep()) == []
        assert not folders["a"].exists()  # old, no row: litter
        assert folders["b"].is_dir() and folders["c"].is_dir() and other.is_dir()  # stored / young / not a clip id
        assert asyncio.run(retention.remove_litter(now=time.time() + LITTER_GRACE_S + 5)) == 1  # "c" once old
        assert not folders["c"].exists() and folders["b"].is_dir()
    finally:
        store.close()
