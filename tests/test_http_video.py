"""Video sessions, refinement with ``mask_input`` and weight sharing, through a real uvicorn on 127.0.0.1.

Servers run over the session's tiny image engine and a module-wide tiny video engine (random weights, so
objects found by phrases or clicks may be invisible on some frames; tests count frames, not objects).
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from conftest import random_image
from http_helpers import (
    AGENT,
    SCORE_ATOL,
    SEED,
    assert_masks_close,
    b64,
    client_of,
    png_of,
    serve,
    sse_events,
)
from video_fixtures import HEIGHT, WIDTH

from sam3_core.postprocess import rle_to_mask
from serving.config import ServeSettings
from serving.http.app import create_app
from serving.http.server import BackgroundServer

SESSIONS = "/v1/video/sessions"


def upload(clip: Path) -> dict[str, Any]:
    return {"video": ("clip.mp4", clip.read_bytes(), "video/mp4")}


def open_session(client: httpx.Client, clip: Path) -> str:
    created = client.post(SESSIONS, files=upload(clip))
    assert created.status_code == 201, created.text
    return created.json()["session_id"]


def uploads(server: BackgroundServer) -> list[Path]:
    """The uploaded videos the server holds now."""
    store = server.app.state.video_sessions
    return sorted(store.root.rglob("upload*")) if store._root is not None else []


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


# ------------------------------------------------------------------------------------------- sessions


def test_session_life_cycle_streamed_propagation_and_cleanup(engine, video_engine, clip):
    server = serve(engine, video_engine, video=True)
    with client_of(server) as client:
        created = client.post(SESSIONS, files=upload(clip))
        assert created.status_code == 201, created.text
        sid = created.json()["session_id"]
        assert created.json()["video"] == {"num_frames": 6, "width": WIDTH, "height": HEIGHT, "fps": 10.0}
        [stored] = uploads(server)
        assert stored.read_bytes() == clip.read_bytes()
        url = f"{SESSIONS}/{sid}"

        text = client.post(f"{url}/prompts", json={"phrases": ["disc"]})
        assert text.json() == {"session_id": sid, "phrases": ["disc"], "object_id": None, "frame": None}
        click = client.post(f"{url}/prompts", json={"frame_index": 2, "points": [[24, 30]], "point_labels": [1]})
        assert click.status_code == 200, click.text
        clicked = click.json()["object_id"]
        assert click.json()["frame"]["frame_index"] == 2 and click.json()["phrases"] == ["disc"]
        boxed = client.post(f"{url}/prompts", json={"frame_index": 2, "box": [10, 16, 38, 44], "object_id": clicked,
                                                    "masks": False})
        assert boxed.status_code == 200 and boxed.json()["object_id"] == clicked
        assert all("rle" not in o for o in boxed.json()["frame"]["objects"])
        info = client.get(url).json()
        assert info["phrases"] == ["disc"] and clicked in info["object_ids"] and info["idle_timeout_s"] == 600

        with client.stream("POST", f"{url}/propagate", json={"masks": False}) as stream:
            assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
            events = sse_events(stream)
        progress = [e for e in events if e["type"] == "progress"]  # the start frame is not given: total unknown
        assert progress and progress[-1]["done"] and progress[-1]["frames_done"] == 6 and progress[-1]["total"] is None
        assert all(e["fps"] >= 0 and e["objects"] >= 0 and e["frames_done"] >= 1 for e in progress)
        assert [e["type"] for e in events].index("progress") > [e["type"] for e in events].index("frame")
        events = [e for e in events if e["type"] != "progress"]
        assert [e["type"] for e in events] == ["frame"] * 6 + ["done"] and events[-1]["frames"] == 6
        assert [e["frame"]["frame_index"] for e in events[:-1]] == list(range(6))
        assert all("rle" not in o and o["box_xyxy"] for e in events[:-1] for o in e["frame"]["objects"])

        back = client.post(f"{url}/propagate", json={"stream": False, "start_frame": 3, "direction": "backward",
                                                     "max_frames": 2})
        assert back.status_code == 200, back.text
        assert [f["frame_index"] for f in back.json()["frames"]] == [3, 2]
        for obj in (o for f in back.json()["frames"] for o in f["objects"]):
            assert rle_to_mask(obj["rle"]).shape == (HEIGHT, WIDTH)

        removed = client.delete(f"{url}/objects/{clicked}")
        assert removed.status_code == 200 and clicked not in removed.json()["object_ids"]
        again = client.post(f"{url}/propagate", json={"stream": False, "start_frame": 2, "max_frames": 3})
        assert all(o["object_id"] != clicked for f in again.json()["frames"] for o in f["objects"])

        assert client.delete(url).status_code == 204
        assert not stored.exists() and not stored.parent.exists() and uploads(server) == []
        assert error(client.get(url)) == (404, "unknown_session")
        assert sid not in video_engine.session_ids()
        left_open = open_session(client, clip)  # closed by the shutdown
        root = server.app.state.video_sessions.root
    assert not root.exists() and left_open not in video_engine.session_ids()


def test_error_statuses(engine, video_engine, clip, tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    shutil.copy(clip, root / "clip.mp4")
    server = serve(engine, video_engine, video=True, video_root=str(root))
    with client_of(server) as client:
        by_path = client.post(SESSIONS, json={"path": "clip.mp4"})
        assert by_path.status_code == 201 and by_path.json()["video"]["num_frames"] == 6
        url = f"{SESSIONS}/{by_path.json()['session_id']}"
        assert error(client.post(SESSIONS, json={"path": "../clip.mp4"})) == (403, "path_not_allowed")
        assert error(client.post(SESSIONS, json={"path": str(clip)})) == (403, "path_not_allowed")
        assert error(client.post(SESSIONS, json={"path": "missing.mp4"})) == (400, "bad_input")
        assert error(client.post(SESSIONS, json={"path": "clip.mp4", "x": 1})) == (422, "validation_error")
        assert client.post(SESSIONS, content=b"x", headers={"content-type": "text/plain"}).status_code == 415
        assert client.post(SESSIONS, files={"video": ("x.mp4", b"not a video")}).status_code == 400
        assert uploads(server) == []  # the refused upload is gone

        for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/prompts"), ("POST", "/propagate"),
                             ("DELETE", "/objects/1")):
            body = {"phrases": ["disc"]} if path == "/prompts" else {} if method == "POST" else None
            missing = client.request(method, f"{SESSIONS}/nope{path}", json=body)
            assert error(missing) == (404, "unknown_session"), (method, path)
        assert error(client.post(f"{url}/propagate", json={})) == (400, "bad_input")  # nothing to track yet
        assert error(client.post(f"{url}/prompts", json={})) == (400, "bad_input")
        assert error(client.post(f"{url}/prompts", json={"object_id": 1, "phrases": ["a"]})) == (400, "bad_input")
        assert error(client.post(f"{url}/prompts", json={"frame_index": 6, "points": [[1, 1]]})) == (
            400, "bad_frame_index")
        assert error(client.post(f"{url}/prompts", json={"points": [[1, 1], [2, 2]], "point_labels": [1]})) == (
            400, "bad_input")
        assert error(client.post(f"{url}/prompts", json={"points": [[1, 1]], "object_id": 99})) == (
            404, "unknown_object")
        assert error(client.post(f"{url}/prompts", json={"phrases": ["disc"], "x": 1})) == (422, "validation_error")
        assert client.post(f"{url}/prompts", json={"phrases": ["disc"]}).status_code == 200
        assert error(client.post(f"{url}/propagate", json={"start_frame": 6})) == (400, "bad_frame_index")
        assert error(client.post(f"{url}/propagate", json={"direction": "sideways"}))[0] == 422
        assert error(client.delete(f"{url}/objects/99")) == (404, "unknown_object")
        assert client.delete(url).status_code == 204
        assert (root / "clip.mp4").exists()  # server-side videos are not the server's to delete

    limited = serve(engine, video_engine, video=True, max_body_bytes=clip.stat().st_size // 2, max_pixels=50 * 50,
                    video_root=str(root))
    with client_of(limited) as client:
        assert error(client.post(SESSIONS, json={"path": "clip.mp4"})) == (413, "too_large")  # pixels
        assert error(client.post(SESSIONS, files=upload(clip))) == (413, "too_large")  # body
        # A well-formed start of a file part, then more bytes than the limit, sent without a length:
        # the parser keeps reading file data until the byte count trips the limit.
        head = (b'--x\r\nContent-Disposition: form-data; name="video"; filename="clip.mp4"\r\n'
                b"Content-Type: video/mp4\r\n\r\n")
        chunks = [head] + [b"\0" * 4096] * (clip.stat().st_size // 4096 + 1)
        chunked = client.post(SESSIONS, content=iter(chunks),
                              headers={"content-type": "multipart/form-data; boundary=x"})
        assert error(chunked) == (413, "too_large") and uploads(limited) == []
    with client_of(serve(engine, video_engine, video=True)) as client:
        assert error(client.post(SESSIONS, json={"path": "clip.mp4"})) == (403, "path_not_allowed")
    with client_of(serve(engine)) as client:
        assert error(client.post(SESSIONS, files=upload(clip))) == (503, "not_ready")
    assert video_engine.session_ids() == []


def test_one_request_per_session_at_a_time_409(engine, video_engine, clip, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    add_points = video_engine.add_points

    def held(*args: Any, **kwargs: Any):
        entered.set()
        release.wait(30)
        return add_points(*args, **kwargs)

    monkeypatch.setattr(video_engine, "add_points", held)
    with client_of(serve(engine, video_engine, video=True)) as client, ThreadPoolExecutor(1) as pool:
        url = f"{SESSIONS}/{open_session(client, clip)}"
        clicking = pool.submit(client.post, f"{url}/prompts", json={"points": [[24, 30]]})
        assert entered.wait(30)
        assert error(client.post(f"{url}/prompts", json={"phrases": ["disc"]})) == (409, "session_busy")
        assert error(client.post(f"{url}/propagate", json={})) == (409, "session_busy")
        assert client.get(url).status_code == 200  # reading the session does not wait
        release.set()
        assert clicking.result().status_code == 200
        assert client.post(f"{url}/propagate", json={"stream": False, "max_frames": 1}).status_code == 200
        assert client.delete(url).status_code == 204


def test_session_cap_429_shared_with_track(engine, video_engine, clip):
    server = serve(engine, video_engine, video=True, video_max_sessions=2, video_timeout_s=1.5)
    with client_of(server) as client:
        first, _ = open_session(client, clip), open_session(client, clip)
        assert error(client.post(SESSIONS, files=upload(clip))) == (429, "too_many_sessions")
        params = {"params": '{"points": [[24, 30]], "max_frames": 2}'}
        assert error(client.post("/v1/video/track", files=upload(clip), data=params)) == (504, "timeout")  # waited
        assert len(uploads(server)) == 2
        assert client.delete(f"{SESSIONS}/{first}").status_code == 204
        tracked = client.post("/v1/video/track", files=upload(clip), data=params)
        assert tracked.status_code == 200, tracked.text
        assert [f["frame_index"] for f in tracked.json()["frames"]] == [0, 1]
        assert open_session(client, clip) and len(uploads(server)) == 2


def test_a_request_timing_out_while_its_session_opens_leaks_nothing(engine, video_engine, clip, monkeypatch):
    start_session, opened = video_engine.start_session, threading.Event()

    def slow(*args: Any, **kwargs: Any) -> str:
        session_id = start_session(*args, **kwargs)
        time.sleep(1.0)
        opened.set()
        return session_id

    monkeypatch.setattr(video_engine, "start_session", slow)
    server = serve(engine, video_engine, video=True, video_timeout_s=0.3)
    with client_of(server) as client:
        params = {"params": '{"phrases": ["disc"]}'}
        assert error(client.post("/v1/video/track", files=upload(clip), data=params)) == (504, "timeout")
        assert opened.wait(10)  # the engine session is handed over after its request gave up
        deadline = time.monotonic() + 10
        while video_engine.session_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert video_engine.session_ids() == [] and uploads(server) == []


def test_idle_sessions_expire_and_their_uploads_are_deleted(engine, video_engine, clip):
    server = serve(engine, video_engine, video=True, video_idle_timeout_s=0.3)
    with client_of(server) as client:
        sid = open_session(client, clip)
        [stored] = uploads(server)
        deadline = time.monotonic() + 10
        while sid in video_engine.session_ids() and time.monotonic() < deadline:
            time.sleep(0.05)  # the background sweep closes it, with no request needed
        assert sid not in video_engine.session_ids() and not stored.exists()
        assert error(client.get(f"{SESSIONS}/{sid}")) == (404, "unknown_session")


# ------------------------------------------------------------------------------------------- refine


def test_refine_round_trip_with_mask_input(engine):
    pixels = random_image(np.random.default_rng(SEED + 7))
    with client_of(serve(engine)) as client:
        image = {"base64": b64(png_of(pixels))}
        first = client.post("/v1/refine", json={"image": image, "points": [[40, 30]], "point_labels": [1]})
        assert first.status_code == 200, first.text
        logits = first.json()["low_res_logits"]
        values = np.frombuffer(base64.b64decode(logits["base64"]), "<f2").reshape(logits["shape"])
        direct = engine.refine(pixels, points=[[40, 30]], point_labels=[1])
        assert logits["dtype"] == "float16" and values.shape == direct.low_res_logits.shape
        np.testing.assert_allclose(values, direct.low_res_logits, rtol=1e-3, atol=1e-3)

        clicks = {"points": [[40, 30], [70, 60]], "point_labels": [1, 0]}
        second = client.post("/v1/refine", json={"image": image, **clicks, "mask_input": logits})
        assert second.status_code == 200, second.text
        expected = engine.refine(pixels, **clicks, mask_input=values.astype(np.float32))
        assert_masks_close(rle_to_mask(second.json()["mask"]["rle"]), expected.mask)  # batched vs direct call
        without = engine.refine(pixels, **clicks)
        assert not np.allclose(expected.low_res_logits, without.low_res_logits)  # the mask input counted

        as_float32 = {"shape": logits["shape"], "dtype": "float32",
                      "base64": b64(values.astype("<f4").tobytes())}
        params = json.dumps({**clicks, "mask_input": as_float32, "return_logits": False})
        multipart = client.post("/v1/refine", files={"image": ("a.png", png_of(pixels), "image/png")},
                                data={"params": params})
        assert multipart.status_code == 200, multipart.text
        assert multipart.json()["mask"] == second.json()["mask"] and "low_res_logits" not in multipart.json()

        short = {**logits, "base64": b64(values.tobytes()[:-2])}
        assert error(client.post("/v1/refine", json={"image": image, **clicks, "mask_input": short})) == (
            400, "bad_input")
        garbled = {**logits, "base64": "@@@"}
        assert error(client.post("/v1/refine", json={"image": image, **clicks, "mask_input": garbled}))[0] == 400
        flat = {**logits, "shape": [logits["shape"][0]]}
        assert error(client.post("/v1/refine", json={"image": image, **clicks, "mask_input": flat}))[0] == 422


# ------------------------------------------------------------------------------------------- weights


def wait_ready(client: httpx.Client, seconds: float = 120) -> dict[str, Any]:
    """``/readyz`` once no model is still loading (loaded or failed)."""
    deadline = time.monotonic() + seconds
    while True:
        ready = client.get("/readyz").json()
        loading = any(part.endswith("loading") for part in ready["detail"].split("; "))
        if not loading or time.monotonic() > deadline:
            return ready
        time.sleep(0.05)


def test_serving_images_and_video_loads_the_weights_once(engine, tmp_path, clip):
    from sam3_core.tiny import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(tmp_path / "sam3", video=True, seed=0)  # the weights of `engine`
    app = create_app(ServeSettings(model=str(checkpoint), device="cpu", video=True, agent=AGENT))
    with client_of(BackgroundServer(app)) as client:
        assert wait_ready(client)["ready"] is True
        rt = app.state.runtime
        video_model, handler = rt.video.model, rt.engine._handler
        assert handler.detector is video_model.detector_model
        shared = {p.data_ptr() for p in video_model.parameters()}
        assert {p.data_ptr() for p in [*handler.detector.parameters(), *handler.tracker.parameters()]} <= shared
        backbone = video_model.detector_model.vision_encoder.backbone
        assert [p.data_ptr() for p in handler.tracker.vision_encoder.backbone.parameters()] == [
            p.data_ptr() for p in backbone.parameters()]

        pixels = random_image(np.random.default_rng(SEED + 8))
        body = {"image": {"base64": b64(png_of(pixels))}, "points": [[50, 40]], "point_labels": [1]}
        refined = client.post("/v1/refine", json=body).json()
        expected = engine.refine(pixels, points=[[50, 40]], point_labels=[1])
        assert_masks_close(rle_to_mask(refined["mask"]["rle"]), expected.mask)  # another engine, same weights
        segment = client.post("/v1/segment", json={"image": body["image"], "phrases": ["cup"]})
        scores = [i["score"] for i in segment.json()["results"][0]["instances"]]
        direct = engine.segment(pixels, ["cup"], score_threshold=0.2)[0].scores
        np.testing.assert_allclose(scores, direct, atol=SCORE_ATOL)
        url = f"{SESSIONS}/{open_session(client, clip)}"
        assert client.post(f"{url}/prompts", json={"points": [[24, 30]]}).status_code == 200
        assert len(client.post(f"{url}/propagate", json={"stream": False, "max_frames": 2}).json()["frames"]) == 2


def test_image_engine_loads_alone_when_the_video_model_cannot(image_only_checkpoint):
    app = create_app(ServeSettings(model=image_only_checkpoint, device="cpu", video=True, agent=AGENT))
    with client_of(BackgroundServer(app)) as client:
        ready = wait_ready(client)
        assert ready["ready"] is False and ready["detail"].startswith("video model loading failed")
        image = {"base64": b64(png_of(random_image(np.random.default_rng(SEED))))}
        assert client.post("/v1/segment", json={"image": image, "phrases": ["cup"]}).status_code == 200
        assert error(client.post(SESSIONS, json={"path": "x"})) == (503, "not_ready")
