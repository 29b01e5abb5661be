"""The HTTP API through a real uvicorn on 127.0.0.1 (random port, background thread), with the session's tiny
SAM 3 engine and the scripted OpenAI-compatible LLM server.

The tiny checkpoint has random weights (scores about 0.25), so the servers run with ``score_threshold=0.2``
(see :mod:`http_helpers`). Images use their own seeds, so the engine tests that count cache misses keep a cold cache.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import random_image
from http_helpers import (
    AGENT,
    SEED,
    assert_instances_close,
    b64,
    decode_png,
    png_of,
    serve,
    sse_events,
    tiny_video_engine,
)

from agent.llm import LLMConfig
from agent.testing import Reply, ScriptedLLM, message_texts
from sam3_core.errors import CheckpointError
from sam3_core.postprocess import rle_to_mask
from serving.config import ServeSettings
from serving.http.app import create_app
from serving.http.server import BackgroundServer


def call(name: str, **arguments: Any) -> Reply:
    """A scripted reply calling ``name`` in the text tool protocol."""
    return Reply.text(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")


def llm_config(server: ScriptedLLM) -> LLMConfig:
    return LLMConfig(base_url=server.base_url, model=server.model, api_key="test", timeout_s=20.0, max_retries=0,
                     tool_protocol="text")


@pytest.fixture(scope="module")
def image_png() -> bytes:
    return png_of(random_image(np.random.default_rng(SEED)))


@pytest.fixture(scope="module")
def api(engine) -> Iterator[httpx.Client]:
    """A server without token or LLM, shared by the module's segmentation tests."""
    with BackgroundServer(create_app(ServeSettings(model="tiny", agent=AGENT), engine=engine)) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server
    assert not server.errors, server.errors
    assert server.remaining == 0, "scripted replies left over"


# ------------------------------------------------------------------------------------------- service


def test_health_ready_docs_and_openapi(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json() == {"ready": True, "detail": ""}
    assert api.get("/docs").status_code == 200
    schema = api.get("/openapi.json").json()
    assert {"/v1/segment", "/v1/refine", "/v1/agent", "/v1/chat", "/healthz", "/readyz", "/metrics"} <= set(
        schema["paths"])
    body = schema["paths"]["/v1/segment"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["$ref"] == "#/components/schemas/SegmentRequest"
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    components = schema["components"]["schemas"]
    assert {"SegmentRequest", "ImageSpec", "SegmentResponse", "AgentRequest", "AgentResponse", "AgentEvent",
            "RefineRequest", "ErrorResponse"} <= set(components)
    assert "phrases" in components["SegmentRequest"]["properties"]
    assert "413" in schema["paths"]["/v1/segment"]["post"]["responses"]
    assert "security" not in schema["paths"]["/v1/segment"]["post"]


# ------------------------------------------------------------------------------------------- segment


def test_segment_json_base64_with_every_mask_format(api, image_png):
    body = {"image": {"base64": b64(image_png)}, "phrases": ["cup", "woman"], "formats": ["rle", "png", "polygons"]}
    response = api.post("/v1/segment", json=body)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["image"] == {"width": 120, "height": 90}
    assert [r["phrase"] for r in document["results"]] == ["cup", "woman"]
    instances = document["results"][0]["instances"]
    assert instances and all(i["score"] > 0.2 for i in instances)
    first = instances[0]
    mask = rle_to_mask(first["rle"])
    assert mask.shape == (90, 120) and mask.sum() == first["area"] > 0
    assert np.array_equal(decode_png(first["png_base64"]) > 0, mask)
    assert first["polygons"] and len(first["polygons"][0]) >= 6
    x1, y1, x2, y2 = first["box_xyxy"]
    assert 0 <= x1 < x2 <= 120 and 0 <= y1 < y2 <= 90


def test_segment_multipart_upload_and_data_url(api, image_png):
    params = json.dumps({"phrases": ["cup"], "score_threshold": 0.2})
    upload = api.post("/v1/segment", files={"image": ("photo.png", image_png, "image/png")}, data={"params": params})
    assert upload.status_code == 200, upload.text
    as_data_url = api.post("/v1/segment", json={"image": {"base64": f"data:image/png;base64,{b64(image_png)}"},
                                                "phrases": ["cup"]})
    assert upload.json()["results"] == as_data_url.json()["results"]
    assert "png_base64" not in upload.json()["results"][0]["instances"][0]


def test_segment_by_exemplar_boxes_alone(api, image_png):
    body = {"image": {"base64": b64(image_png)}, "exemplar_boxes": [[10, 10, 50, 40]], "score_threshold": 0.0}
    response = api.post("/v1/segment", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["phrase"] == "visual"


def test_refine_from_click_and_from_box(api, image_png):
    click = api.post("/v1/refine", json={"image": {"base64": b64(image_png)}, "points": [[40, 30]],
                                         "point_labels": [1], "formats": ["png"]})
    assert click.status_code == 200, click.text
    mask = click.json()["mask"]
    assert "rle" not in mask and decode_png(mask["png_base64"]).shape == (90, 120)
    box = api.post("/v1/refine", files={"image": ("a.png", image_png, "image/png")},
                   data={"params": json.dumps({"box": [20, 10, 90, 70]})})
    assert box.status_code == 200, box.text
    assert rle_to_mask(box.json()["mask"]["rle"]).sum() == box.json()["mask"]["area"]


def test_concurrent_segment_requests_are_batched_and_agree(api, engine, image_png):
    phrases = ["cup", "woman", "table", "plant"] * 4
    alone = {p: api.post("/v1/segment", json={"image": {"base64": b64(image_png)}, "phrases": [p]}).json()["results"]
             for p in set(phrases)}
    before = engine.counters()

    def one(phrase: str) -> tuple[str, httpx.Response]:
        return phrase, api.post("/v1/segment", json={"image": {"base64": b64(image_png)}, "phrases": [phrase]})

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, phrases))
    after = engine.counters()
    assert all(r.status_code == 200 for _, r in answers)
    for phrase, response in answers:
        got = response.json()["results"]
        # Batched and single requests run different batch sizes: equal within tolerance, not bit for bit.
        assert_instances_close(got[0]["instances"], alone[phrase][0]["instances"])
    assert after.prompts - before.prompts == len(phrases)
    assert after.detector_passes - before.detector_passes <= len(phrases)


def test_metrics_count_requests_latency_queue_and_cache(api, image_png):
    api.post("/v1/segment", json={"image": {"base64": b64(image_png)}, "phrases": ["cup"]})
    api.post("/v1/segment", json={"image": {"base64": "!!"}, "phrases": ["cup"]})
    response = api.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'sam3_http_requests_total{method="POST",route="/v1/segment",status="200"}' in text
    assert 'sam3_http_requests_total{method="POST",route="/v1/segment",status="400"}' in text
    assert 'sam3_http_request_duration_seconds_bucket{le="0.5",method="POST",route="/v1/segment"}' in text
    for name in ("sam3_engine_queue_depth", "sam3_engine_cache_hits_total", "sam3_engine_cache_misses_total",
                 "sam3_engine_ready 1.0", "sam3_http_requests_in_flight"):
        assert name in text


# ------------------------------------------------------------------------------------------- errors


def test_bad_input_is_400_and_schema_mismatch_is_422(api, image_png):
    cases = [
        ({"image": {"base64": "not base64!"}, "phrases": ["cup"]}, 400, "bad_input"),
        ({"image": {"base64": b64(b"not an image")}, "phrases": ["cup"]}, 400, "bad_input"),
        ({"image": {"base64": b64(image_png)}, "phrases": []}, 400, "bad_input"),
        ({"image": {"base64": b64(image_png)}, "phrases": ["cup"], "exemplar_boxes": [[50, 50, 10, 10]]}, 400,
         "bad_input"),
        ({"image": {"base64": b64(image_png)}, "phrases": "cup"}, 422, "validation_error"),
        ({"image": {"base64": b64(image_png)}, "phrases": ["cup"], "colour": "red"}, 422, "validation_error"),
        ({"image": {}, "phrases": ["cup"]}, 422, "validation_error"),
        ({"image": {"base64": b64(image_png)}, "phrases": ["cup"], "score_threshold": 2}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        response = api.post("/v1/segment", json=body)
        assert response.status_code == status, (body, response.text)
        error = response.json()["error"]
        assert error["status"] == status and error["code"] == code and error["message"]
    refine = api.post("/v1/refine", json={"image": {"base64": b64(image_png)}})
    assert refine.status_code == 400 and "point or a box" in refine.json()["error"]["message"]
    garbage = api.post("/v1/segment", content=b"{", headers={"content-type": "application/json"})
    assert garbage.status_code == 422
    missing_file = api.post("/v1/segment", files={"other": ("a.png", image_png)}, data={"params": "{}"})
    assert missing_file.status_code == 422 and "image" in missing_file.json()["error"]["message"]
    assert api.post("/v1/segment", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert api.get("/v1/nothing-here").json()["error"]["status"] == 404


def test_unexpected_errors_are_json_500_and_keep_the_connection(engine):
    app = create_app(ServeSettings(model="tiny"), engine=engine)

    @app.post("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    with BackgroundServer(app) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        for _ in range(2):
            response = client.post("/v1/boom")
            assert response.status_code == 500 and response.json()["error"]["code"] == "internal"
            assert "kaboom" not in response.text  # details stay in the server log
        assert client.get("/healthz").status_code == 200


def test_url_images_are_off_by_default(api):
    response = api.post("/v1/segment", json={"image": {"url": "http://127.0.0.1:9/cat.png"}, "phrases": ["cat"]})
    assert response.status_code == 400 and response.json()["error"]["code"] == "url_images_disabled"


@pytest.fixture
def image_host(image_png) -> Iterator[str]:
    """A plain HTTP server with /small.png (the test image), /big.png (over the cap) and 404s."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = {"/small.png": image_png, "/big.png": image_png + b"\0" * 5000}.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_images_when_enabled_with_size_cap(engine, image_host, image_png):
    with serve(engine, allow_url_images=True, url_max_bytes=len(image_png) + 100,
               url_allow_networks=("127.0.0.1/32",)) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        ok = client.post("/v1/segment", json={"image": {"url": f"{image_host}/small.png"}, "phrases": ["cup"]})
        assert ok.status_code == 200, ok.text
        big = client.post("/v1/segment", json={"image": {"url": f"{image_host}/big.png"}, "phrases": ["cup"]})
        assert big.status_code == 413
        missing = client.post("/v1/segment", json={"image": {"url": f"{image_host}/none.png"}, "phrases": ["x"]})
        assert missing.status_code == 400 and missing.json()["error"]["code"] == "url_fetch_failed"
        ftp = client.post("/v1/segment", json={"image": {"url": "ftp://example.org/a.png"}, "phrases": ["x"]})
        assert ftp.status_code == 400


def test_size_pixel_limits_413_and_timeout_504(engine, image_png):
    with serve(engine, max_body_bytes=len(image_png) * 2, max_pixels=100 * 80, request_timeout_s=1e-4) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        huge = client.post("/v1/segment", files={"image": ("a.png", image_png * 3)}, data={"params": "{}"})
        assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"
        chunked = client.post("/v1/segment", content=iter([b"{" * len(image_png)] * 3),
                              headers={"content-type": "application/json"})
        assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "too_large"
        pixels = client.post("/v1/segment", json={"image": {"base64": b64(image_png)}, "phrases": ["cup"]})
        assert pixels.status_code == 413 and "pixels" in pixels.json()["error"]["message"]
        small = png_of(random_image(np.random.default_rng(SEED), 60, 80))
        slow = client.post("/v1/segment", json={"image": {"base64": b64(small)}, "phrases": ["cup"]})
        assert slow.status_code == 504 and slow.json()["error"]["code"] == "timeout"


def test_not_ready_is_503_until_the_model_loads(image_png):
    release = threading.Event()

    def slow_failing_load():
        release.wait(10)
        raise CheckpointError("no weights here")

    app = create_app(ServeSettings(model="missing-model"), engine_factory=slow_failing_load)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        loading = client.get("/readyz")
        assert loading.status_code == 503 and loading.json()["detail"] == "loading"
        segment = client.post("/v1/segment", json={"image": {"base64": b64(image_png)}, "phrases": ["cup"]})
        assert segment.status_code == 503 and segment.headers["retry-after"] == "5"
        release.set()
        for _ in range(200):
            failed = client.get("/readyz").json()
            if failed["detail"] != "loading":
                break
            threading.Event().wait(0.02)
        assert "no weights here" in failed["detail"]
        assert "no weights here" in client.post("/v1/refine", json={}).json()["error"]["message"]
        assert "sam3_engine_ready 0.0" in client.get("/metrics").text


def test_bearer_token(engine, image_png):
    with serve(engine, token="s3cret") as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        body = {"image": {"base64": b64(image_png)}, "phrases": ["cup"]}
        missing = client.post("/v1/segment", json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["error"]["code"] == "unauthorized"
        wrong = client.post("/v1/segment", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        invalid_body = client.post("/v1/segment", json={"bad": 1})
        assert invalid_body.status_code == 401  # auth is checked before the body
        right = client.post("/v1/segment", json=body, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200
        schema = client.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert schema["paths"]["/v1/agent"]["post"]["security"] == [{"bearer": []}]
        assert 'status="401"' in client.get("/metrics").text


# ------------------------------------------------------------------------------------------- agent


def test_agent_json_answer_with_overlay_and_mask(engine, llm, image_png):
    llm.add(call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[1]))
    with serve(engine, llm=llm_config(llm)) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        response = client.post("/v1/agent", json={"image": {"base64": b64(image_png)}, "query": "the cup",
                                                  "include_overlay": True, "include_mask_png": True})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["status"] == "answered" and answer["mask_ids"] == [1] and answer["steps"] == 2
        assert answer["masks"][0]["phrase"] == "cup" and answer["usage"]["calls"] == 2
        mask = decode_png(answer["mask_png"]) > 0
        assert np.array_equal(mask, rle_to_mask(answer["masks"][0]["rle"])) and mask.any()
        assert decode_png(answer["overlay_png"]).shape == (90, 120, 3)
        assert 'sam3_agent_queries_total{status="answered"} 1.0' in client.get("/metrics").text


def test_agent_streams_each_step_then_the_answer(engine, llm, image_png):
    llm.add(call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[7]),
            call("select_masks_and_return", mask_ids=[1]))
    with serve(engine, llm=llm_config(llm)) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        body = {"image": {"base64": b64(image_png)}, "query": "the cup", "stream": True, "include_overlay": True}
        with client.stream("POST", "/v1/agent", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response)
    kinds = [e["type"] for e in events]
    assert kinds == ["tool_call", "tool_result", "tool_call", "retry", "tool_call", "tool_result", "answer"]
    assert events[0]["name"] == "segment_phrase" and events[0]["arguments"] == {"text_prompt": "cup"}
    assert events[1]["candidates"][0]["id"] == 1 and "found" in events[1]["text"]
    assert decode_png(events[1]["overlay_png"]).shape == (90, 120, 3)
    assert "Unknown mask id" in events[3]["text"]
    assert events[-1]["answer"]["mask_ids"] == [1] and events[-1]["answer"]["overlay_png"]


def test_agent_follow_up_on_a_thread_and_another_image_is_409(engine, llm, image_png):
    llm.add(call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[1]),
            call("segment_phrase", text_prompt="woman"), call("select_masks_and_return", mask_ids=[1, 2]))
    with serve(engine, llm=llm_config(llm)) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        image = {"base64": b64(image_png)}
        first = client.post("/v1/agent", json={"image": image, "query": "the cup", "thread_id": "kitchen"}).json()
        assert first["thread_id"] == "kitchen" and first["mask_ids"] == [1]
        second = client.post("/v1/agent", json={"image": image, "query": "and the woman", "thread_id": "kitchen"})
        assert second.json()["mask_ids"] == [1, 2] and second.json()["phrases_tried"] == ["woman"]
        assert "Masks found for earlier queries" in "\n".join(message_texts(llm.requests[2]))
        other = {"base64": b64(png_of(random_image(np.random.default_rng(SEED + 1))))}
        conflict = client.post("/v1/agent", json={"image": other, "query": "x", "thread_id": "kitchen"})
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "thread_image_mismatch"


def test_agent_errors_503_502_504_and_as_stream_events(engine, llm, image_png):
    body = {"image": {"base64": b64(image_png)}, "query": "the cup"}
    with serve(engine) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        assert client.post("/v1/agent", json=body).status_code == 503  # no LLM configured
    llm.add(Reply.error(500, "model crashed"), Reply.error(500, "model crashed"), Reply.text("late", delay_s=3))
    with serve(engine, llm=llm_config(llm), agent_timeout_s=0.5) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        failed = client.post("/v1/agent", json=body)
        assert failed.status_code == 502 and failed.json()["error"]["code"] == "llm_unavailable"
        with client.stream("POST", "/v1/agent", json={**body, "stream": True}) as response:
            events = sse_events(response)
        assert [e["type"] for e in events] == ["error"] and events[0]["error"]["status"] == 502
        slow = client.post("/v1/agent", json=body)
        assert slow.status_code == 504 and "0.5s" in slow.json()["error"]["message"]
        assert 'sam3_agent_queries_total{status="error"} 3.0' in client.get("/metrics").text


# ------------------------------------------------------------------------------------------- video


@pytest.fixture(scope="module")
def video_engine(tmp_path_factory):
    with tiny_video_engine(tmp_path_factory.mktemp("tiny_sam3_video")) as eng:
        yield eng


def test_video_track_as_json_and_as_a_stream(engine, video_engine, tmp_path, api):
    from video_fixtures import HEIGHT, WIDTH, moving_shapes, write_mp4

    clip = write_mp4(moving_shapes(6), tmp_path / "clip.mp4", gop=5).read_bytes()
    assert api.post("/v1/video/track", files={"video": ("c.mp4", clip)}).status_code == 503  # no --video
    with serve(engine, video_engine, video=True) as server, \
            httpx.Client(base_url=server.base_url, timeout=120) as client:
        assert client.get("/readyz").json()["ready"] is True
        upload = {"video": ("clip.mp4", clip, "video/mp4")}
        phrases = client.post("/v1/video/track", files=upload, data={"params": json.dumps({"phrases": ["disc"]})})
        assert phrases.status_code == 200, phrases.text
        document = phrases.json()
        assert document["video"]["num_frames"] == 6 and document["video"]["width"] == WIDTH
        assert [f["frame_index"] for f in document["frames"]] == list(range(6))
        objects = [o for f in document["frames"] for o in f["objects"]]
        assert objects and all(o["phrase"] == "disc" for o in objects)
        assert rle_to_mask(objects[0]["rle"]).shape == (HEIGHT, WIDTH)
        plain = client.post("/v1/video/track", files=upload,
                            data={"phrases": "disc", "max_frames": "2", "masks": "false", "direction": "forward"})
        assert plain.status_code == 200, plain.text  # the same fields as plain form parts
        assert [f["frame_index"] for f in plain.json()["frames"]] == [0, 1]
        assert all("rle" not in o for f in plain.json()["frames"] for o in f["objects"])
        typo = client.post("/v1/video/track", files=upload, data={"phrase": "disc"}).json()["error"]
        assert typo["code"] == "bad_form" and "-F video=@FILE" in typo["message"]
        params = {"points": [[24, 30]], "point_labels": [1], "frame_index": 2, "direction": "both", "stream": True,
                  "masks": False}
        with client.stream("POST", "/v1/video/track", files=upload, data={"params": json.dumps(params)}) as stream:
            events = sse_events(stream)
        progress = [e for e in events if e["type"] == "progress"]  # frames done / fps / objects, then done
        assert progress[-1]["done"] and progress[-1]["frames_done"] == progress[-1]["total"] == 6
        events = [e for e in events if e["type"] != "progress"]
        assert [e["type"] for e in events] == ["start"] + ["frame"] * 6 + ["done"]
        assert sorted(e["frame"]["frame_index"] for e in events[1:-1]) == list(range(6))
        assert events[0]["video"]["num_frames"] == 6 and events[1]["frame"]["frame_index"] == 2
        clicked = [o for e in events[1:-1] for o in e["frame"]["objects"]]  # random weights: maybe none visible
        assert all(o["phrase"] is None and "rle" not in o and "box_xyxy" in o for o in clicked)
        assert client.post("/v1/video/track", files=upload).json()["error"]["code"] == "bad_input"  # no prompt
        broken = client.post("/v1/video/track", files={"video": ("x.mp4", b"not a video")},
                             data={"params": json.dumps({"phrases": ["disc"]})})
        assert broken.status_code == 400
        assert client.post("/v1/video/track", json={"phrases": ["disc"]}).status_code == 415
        assert video_engine.session_ids() == []  # every request closed its session


# ------------------------------------------------------------------------------------------- forms, schema


def test_every_request_body_in_the_schema_has_an_example_that_validates(api, image_png):
    from serving.http import schemas
    from serving.http.examples import EXAMPLES

    schema = api.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    bodies = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for kind, media in operation.get("requestBody", {}).get("content", {}).items():
                name = media["schema"].get("$ref", "").rsplit("/", 1)[-1]
                assert media.get("examples") or components.get(name, {}).get("examples"), (method, path, kind)
                bodies += 1
            for parameter in operation.get("parameters", []):
                assert parameter.get("examples") or parameter["schema"].get("examples"), (method, path, parameter)
    assert bodies >= 14  # segment, refine, agent, chat (x2 each), chat message, video track/sessions/prompts/...
    for name, example in EXAMPLES.items():
        getattr(schemas, name).model_validate(example)  # placeholders are strings, so every example validates
        assert components[name]["examples"] == [example]
    real = {**EXAMPLES["SegmentRequest"], "image": {"base64": b64(image_png)}}
    assert api.post("/v1/segment", json=real).status_code == 200


def test_multipart_takes_plain_fields_or_says_what_it_expects(api, image_png):
    upload = {"image": ("photo.png", image_png, "image/png")}
    plain = api.post("/v1/segment", files=upload, data={"phrases": ["cup", "woman"], "score_threshold": "0.2"})
    as_json = api.post("/v1/segment", files=upload,
                       data={"params": json.dumps({"phrases": ["cup", "woman"], "score_threshold": 0.2})})
    assert plain.status_code == 200, plain.text
    assert [r["phrase"] for r in plain.json()["results"]] == ["cup", "woman"]
    assert plain.json()["results"] == as_json.json()["results"]  # the same request, parsed two ways
    clicks = api.post("/v1/refine", files=upload, data={"points": "[[40, 30]]", "point_labels": ["1"],
                                                        "multimask": "false"})
    assert clicks.status_code == 200, clicks.text
    for data, files, problem in [
        ({"phrase": "cup"}, upload, "unknown part 'phrase'"),
        ({"phrases": "cup"}, {"file": ("a.png", image_png)}, "no file part 'image'"),
        ({"phrases": "cup", "image": "a.png"}, None, "the part 'image' is text, not a file"),
        ({"phrases": "cup", "params": json.dumps({"phrases": ["x"]})}, upload, "'phrases' given both"),
        ({"params": "{phrases: cup}"}, upload, "the part 'params' is not valid JSON"),
        ({"score_threshold": ["0.1", "0.2"]}, upload, "'score_threshold' was sent 2 times"),
    ]:
        response = api.post("/v1/segment", files=files or {"other": ("x.txt", b"x")}, data=data)
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (422, "bad_form"), (data, response.text)
        assert problem in error["message"], error["message"]
        assert "-F image=@FILE -F 'phrases=dog'" in error["message"] and "'params'" in error["message"]
    wrong_type = api.post("/v1/segment", files=upload, data={"phrases": "cup", "score_threshold": "high"})
    assert wrong_type.status_code == 422 and "score_threshold" in wrong_type.json()["error"]["message"]
