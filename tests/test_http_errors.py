"""Errors of the HTTP API through a real uvicorn on 127.0.0.1: bad input (400/422), unexpected errors (500), URL
images, size, pixel and time limits (413/504), not ready (503) and the bearer token (401)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_api_fixtures
import httpx
import numpy as np
import pytest
from conftest import random_image
from http_helpers import SEED, b64, png_of, serve

from sam3_core.errors import CheckpointError
from serving.config import ServeSettings
from serving.http.app import create_app
from serving.http.server import BackgroundServer

image_png, api = http_api_fixtures.image_png, http_api_fixtures.api  # shared fixtures, by name


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
