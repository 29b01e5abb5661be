"""The HTTP API through a real uvicorn on 127.0.0.1 (random port, background thread), with the session's tiny
SAM 3 engine and the scripted OpenAI-compatible LLM server.

The tiny checkpoint has random weights (scores about 0.25), so the servers run with ``score_threshold=0.2``
(see :mod:`http_helpers`). Images use their own seeds, so the engine tests that count cache misses keep a cold cache.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import http_api_fixtures
import httpx
import numpy as np
from http_helpers import assert_instances_close, b64, decode_png, serve, sse_events

from sam3_core.postprocess import rle_to_mask

image_png, api = http_api_fixtures.image_png, http_api_fixtures.api  # shared fixtures, by name


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


# ------------------------------------------------------------------------------------------- video


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
