"""Regression tests of issue 11's serving rows: each test is named after its row and attacks the server the
way the issue's reproduction did (on 127.0.0.1 only, with bounded loops and the tiny engine)."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import random_image
from http_helpers import ImageSite, b64, closed_port, metric_samples, png_of, serve, wait_for

from agent.llm import LLMConfig
from agent.settings import AgentSettings
from agent.testing import Reply, ScriptedLLM
from sam3_core.errors import CheckpointError, InputError
from serving.chat.store import ChatStore
from serving.config import ServeSettings
from serving.http.app import create_app
from serving.http.errors import classify
from serving.http.server import BackgroundServer

SEED = 1111


@pytest.fixture(scope="module")
def image_png() -> bytes:
    return png_of(random_image(np.random.default_rng(SEED)))


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    """A scripted LLM; unlike the shared fixture, replies may be left over (cancelled runs leave them)."""
    with ScriptedLLM() as server:
        yield server


def llm_config(llm: ScriptedLLM, **kw: Any) -> LLMConfig:
    return LLMConfig(base_url=llm.base_url, model=llm.model, api_key="t", timeout_s=20.0, max_retries=0,
                     tool_protocol="text", **kw)


def tool_call(name: str, **arguments: Any) -> Reply:
    return Reply.text(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")


def segment_body(image_png: bytes) -> dict[str, Any]:
    return {"image": {"base64": b64(image_png)}, "phrases": ["cup"]}


def agent_body(image_png: bytes) -> dict[str, Any]:
    return {"image": {"base64": b64(image_png)}, "query": "the cup"}


# ----------------------------------------------------------------------------------------------- row 6


def test_row6_metrics_labels_stay_bounded_for_random_methods_and_paths(engine):
    rng = np.random.default_rng(6)
    with serve(engine) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        for i in range(60):
            method = "".join(chr(c) for c in rng.integers(65, 91, size=8))
            client.request(method, f"/random/{i}/{method.lower()}")
            client.request(method, "/healthz")
        text = client.get("/metrics").text
    samples = metric_samples(text, "sam3_http_requests_total")
    methods = {s["method"].strip('"') for s in samples}
    routes = {s["route"].strip('"') for s in samples}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}, methods
    assert "OTHER" in methods
    assert routes <= {"/healthz", "/metrics", "unmatched"}, routes
    assert len(samples) <= 8


# ----------------------------------------------------------------------------------------------- row 7


def test_row7_chat_refuses_without_an_llm(engine, image_png):
    with serve(engine) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        created = client.post("/v1/chat", files={"image": ("a.png", image_png, "image/png")})
    assert created.status_code == 503, created.text
    assert "no LLM is configured" in created.json()["error"]["message"]


def test_row7_delete_routes_remove_conversations_and_agent_threads(engine, llm, image_png, tmp_path):
    llm.add(tool_call("segment_phrase", text_prompt="cup"), tool_call("select_masks_and_return", mask_ids=[1]))
    with serve(engine, llm=llm_config(llm), state_db=str(tmp_path / "state.sqlite")) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        answer = client.post("/v1/agent", json=agent_body(image_png))
        assert answer.status_code == 200, answer.text
        thread = answer.json()["thread_id"]
        assert client.delete(f"/v1/agent/threads/{thread}").status_code == 204
        assert client.delete(f"/v1/agent/threads/{thread}").status_code == 404
        created = client.post("/v1/chat", files={"image": ("a.png", image_png, "image/png")})
        conversation = created.json()["conversation_id"]
        assert client.get(f"/v1/chat/{conversation}").status_code == 200
        assert client.delete(f"/v1/chat/{conversation}").status_code == 204
        assert client.get(f"/v1/chat/{conversation}").status_code == 404
        assert client.delete(f"/v1/chat/{conversation}").status_code == 404
    with _closing(ChatStore(str(tmp_path / "state.sqlite"))) as store:
        assert store.expired(0.0, 0, now=time.time() + 1) == []  # nothing of either is left


class _closing:
    def __init__(self, store: ChatStore) -> None:
        self.store = store

    def __enter__(self) -> ChatStore:
        return self.store

    def __exit__(self, *exc: Any) -> None:
        self.store.close()


def test_row7_retention_deletes_the_oldest_conversations_over_the_size_limit(engine, llm, image_png):
    limit = int(len(image_png) * 2.5)  # room for two conversations' images (stored as PNG)
    with serve(engine, llm=llm_config(llm), retention_max_bytes=limit) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        ids = [client.post("/v1/chat", files={"image": ("a.png", image_png, "image/png")}).json()["conversation_id"]
               for _ in range(4)]
        kept = [client.get(f"/v1/chat/{i}").status_code for i in ids]
    assert kept == [404, 404, 200, 200]


def test_row7_retention_expires_conversations_by_age(tmp_path):
    with _closing(ChatStore(str(tmp_path / "s.sqlite"))) as store:
        old = store.create(np.zeros((8, 8, 3), np.uint8)).id
        store.add_turn(old, "hi", {"status": "no_mask"})
        assert store.expired(3600.0, 1 << 30) == []
        assert store.expired(3600.0, 1 << 30, now=time.time() + 7200) == [old]
        assert store.delete(old) and store.get(old) is None and store.turns(old) == []


# ----------------------------------------------------------------------------------------------- row 8


@pytest.fixture
def image_site(image_png) -> Iterator[tuple[str, type[ImageSite]]]:
    handler = type("Site", (ImageSite,), {"png": image_png, "slow": {"done": threading.Event()}})
    site = ThreadingHTTPServer(("127.0.0.2", 0), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{site.server_address[1]}", handler
    finally:
        site.shutdown()
        site.server_close()


def test_row8_url_fetch_refuses_private_addresses(engine, image_site):
    site, handler = image_site
    with serve(engine, allow_url_images=True, url_allow_networks=("127.0.0.2/32",)) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        handler.redirect_to = f"{server.base_url}/openapi.json"

        def fetch(url: str) -> httpx.Response:
            return client.post("/v1/segment", json={"image": {"url": url}, "phrases": ["cup"]})

        assert fetch(f"{site}/img.png").status_code == 200  # an allowed address works
        port = server.port
        refused = [fetch(url) for url in (
            f"http://127.0.0.1:{port}/openapi.json", f"http://0x7f000001:{port}/openapi.json",
            f"http://localhost:{port}/openapi.json", f"http://[::1]:{port}/openapi.json",
            f"http://[::ffff:127.0.0.1]:{port}/openapi.json", "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/x.png", f"{site}/redirect", f"http://127.0.0.2:{closed_port('127.0.0.2')}/x.png",
            f"{site}/missing.png")]
    assert [r.status_code for r in refused] == [400] * len(refused)
    messages = {r.json()["error"]["message"] for r in refused}
    assert len(messages) == 1, messages  # one answer for every refusal: no port-scan oracle


def test_row8_url_fetch_has_a_total_deadline(engine, image_site):
    site, handler = image_site
    with serve(engine, allow_url_images=True, url_allow_networks=("127.0.0.2/32",), url_timeout_s=1.0) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        response = client.post("/v1/segment", json={"image": {"url": f"{site}/slow"}, "phrases": ["cup"]})
    assert response.status_code == 400
    assert handler.slow["done"].wait(30)
    assert handler.slow["finished"] is False  # the server hung up long before the 12 s trickle ended


# ----------------------------------------------------------------------------------------------- row 9


def in_flight(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("sam3_http_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no in-flight gauge")


def test_row9_disconnected_agent_client_cancels_the_run(engine, llm, image_png):
    for i in range(30):  # 30 slow replies with distinct phrases: 9 s of work if nobody cancels it
        llm.add(Reply.text(f'<tool_call>{{"name": "segment_phrase", "arguments": {{"text_prompt": "cup {i}"}}}}'
                           '</tool_call>', delay_s=0.3))
    agent = AgentSettings(score_threshold=0.2, max_steps=40, max_phrases=40)
    with serve(engine, llm=llm_config(llm), agent=agent) as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as client:
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{server.base_url}/v1/agent", json=agent_body(image_png), timeout=1.0)
        assert wait_for(lambda: in_flight(client) == 1.0, seconds=30)  # only the /metrics call itself
        calls = len(llm.requests)
        threading.Event().wait(1.0)
        assert len(llm.requests) == calls  # no LLM call after the run was cancelled
    assert calls <= 8, calls


def test_row9_disconnected_video_track_client_cancels_the_tracking(engine, tmp_path, monkeypatch):
    from http_helpers import tiny_video_engine
    from video_fixtures import moving_shapes, write_mp4

    import serving.http.video_sessions as sessions

    frames_done: list[int] = []
    real = sessions.frame_document

    def slow_frame_document(frame: Any, masks: bool) -> dict[str, Any]:
        threading.Event().wait(0.05)  # 120 frames: at least 6 s of tracking if nobody cancels it
        frames_done.append(1)
        return real(frame, masks)

    monkeypatch.setattr(sessions, "frame_document", slow_frame_document)
    clip = write_mp4(moving_shapes(120), tmp_path / "long.mp4", gop=12)
    with tiny_video_engine(tmp_path / "tiny") as video_engine, serve(engine, video_engine, video=True) as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as client:
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{server.base_url}/v1/video/track", timeout=1.0,
                       files={"video": ("long.mp4", clip.read_bytes(), "video/mp4")},
                       data={"params": json.dumps({"phrases": ["disc"], "masks": False})})
        store = server.app.state.video_sessions
        assert wait_for(lambda: in_flight(client) == 1.0 and not store.session_ids(), seconds=60)
        done = len(frames_done)
        threading.Event().wait(0.5)
        assert len(frames_done) == done  # nothing runs for the client that left
    assert done < 120, done


# ----------------------------------------------------------------------------------------------- row 11


def test_row11_readyz_reports_a_non_database_state_file(engine, llm, image_png, tmp_path):
    state = tmp_path / "state.sqlite"
    state.write_bytes(b"this is a text file, not an SQLite database\n" * 200)
    with serve(engine, llm=llm_config(llm), state_db=str(state)) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "state database" in ready.json()["detail"]
        assert str(tmp_path) not in ready.text
        assert client.post("/v1/segment", json=segment_body(image_png)).status_code == 200
        chat = client.post("/v1/chat", files={"image": ("a.png", image_png, "image/png")})
        assert chat.status_code == 503 and "state database" in chat.json()["error"]["message"]


def test_row11_readyz_notices_a_state_file_damaged_while_serving(engine, llm, tmp_path):
    state = tmp_path / "state.sqlite"
    with serve(engine, llm=llm_config(llm), state_db=str(state)) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        assert client.get("/readyz").status_code == 200
        size = max(state.stat().st_size, 8192)  # the content may still sit in the WAL file
        state.write_bytes(bytes(np.random.default_rng(11).integers(0, 256, size, dtype=np.uint8)))
        ready = client.get("/readyz")
    assert ready.status_code == 503 and "state database" in ready.json()["detail"], ready.text


# ----------------------------------------------------------------------------------------------- row 12

_TURN_WRITER = """
import sys
from serving.chat.store import ChatStore
store = ChatStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.add_turn(sys.argv[2], f"m{i}", {"status": "no_mask"})
store.close()
"""


def test_row12_chat_turn_numbers_are_unique_across_processes(tmp_path):
    path = str(tmp_path / "chat.sqlite")
    with _closing(ChatStore(path)) as store:
        conversation = store.create(np.zeros((4, 4, 3), np.uint8)).id
    workers = [subprocess.Popen([sys.executable, "-c", _TURN_WRITER, path, conversation, "60"],
                                stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [worker.communicate(timeout=120)[1] for worker in workers]
    assert [w.returncode for w in workers] == [0] * 4, errors
    with _closing(ChatStore(path)) as store:
        assert [t["index"] for t in store.turns(conversation)] == list(range(240))


# ----------------------------------------------------------------------------------------------- row 13


def test_row13_token_less_server_refuses_cross_site_requests(engine, image_png):
    body = segment_body(image_png)
    with serve(engine) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        evil = client.post("/v1/segment", json=body, headers={"Origin": "http://evil.example"})
        fetch_site = client.post("/v1/segment", json=body, headers={"Sec-Fetch-Site": "cross-site"})
        null_origin = client.post("/v1/chat", json=body, headers={"Origin": "null"})
        same = client.post("/v1/segment", json=body, headers={"Origin": server.base_url,
                                                              "Sec-Fetch-Site": "same-origin"})
        plain = client.post("/v1/segment", json=body)
    assert [evil.status_code, fetch_site.status_code, null_origin.status_code] == [403, 403, 403]
    assert evil.json()["error"]["code"] == "cross_site"
    assert same.status_code == 200 and plain.status_code == 200
    with serve(engine, token="s3cret") as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        with_token = client.post("/v1/segment", json=body, headers={"Origin": "http://evil.example",
                                                                    "Authorization": "Bearer s3cret"})
    assert with_token.status_code == 200  # the token is the guard then


# ----------------------------------------------------------------------------------------------- row 14


def _closed_by_server(sock: socket.socket, trickle: bytes, rounds: int) -> bool:
    """Send ``trickle`` a byte at a time (0.1 s apart); True once the server closes the connection."""
    sock.settimeout(0.1)
    for i in range(rounds):
        try:
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            pass
        except OSError:
            return True
        try:
            sock.sendall(trickle[i % len(trickle):i % len(trickle) + 1])
        except OSError:
            return True
    return False


def test_row14_partial_headers_are_dropped_after_the_header_timeout(engine):
    with serve(engine, header_timeout_s=0.5) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        idle = [socket.create_connection((server.host, server.port)) for _ in range(20)]
        for sock in idle:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        trickler = socket.create_connection((server.host, server.port))
        deadline = time.monotonic() + 10.0  # one bound for all of them
        closed = [_wait_closed(sock, deadline) for sock in idle]
        trickled = _closed_by_server(trickler, b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 100)
        for sock in [*idle, trickler]:
            sock.close()
        assert client.get("/healthz").status_code == 200
    assert all(closed) and trickled


def _wait_closed(sock: socket.socket, deadline: float) -> bool:
    """True once the server closes ``sock`` (before ``deadline``, a ``time.monotonic()`` value)."""
    sock.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_row14_a_body_that_trickles_gets_408(engine):
    with serve(engine, body_timeout_s=0.5) as server:
        sock = socket.create_connection((server.host, server.port))
        sock.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"phr")
        sock.settimeout(10)
        try:
            reply = sock.recv(4096)
        except TimeoutError:
            reply = b""
        sock.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]


# ----------------------------------------------------------------------------------------------- row 15


def test_row15_mcp_image_path_checks_the_byte_limit_before_reading(tmp_path, monkeypatch):
    from mcp.server.mcpserver.exceptions import ToolError

    from serving.mcp.server import McpOptions, _load

    huge = tmp_path / "huge.png"
    with huge.open("wb") as handle:
        handle.truncate(64 << 20)  # sparse: no disk used
    reads: list[int] = []
    real_read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(1) or real_read_bytes(self))
    with pytest.raises(ToolError, match="limit of 1048576"):
        _load(McpOptions(max_bytes=1 << 20), str(huge), None)
    assert reads == []


# ----------------------------------------------------------------------------------------------- row 16


def test_row16_errors_and_readyz_disclose_no_urls_or_paths(engine, llm, image_png):
    llm.add(Reply.error(502, "upstream down"))
    with serve(engine, llm=llm_config(llm)) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        failed = client.post("/v1/agent", json=agent_body(image_png))
    where = llm.base_url.split("//")[1].split("/")[0]
    assert failed.status_code in (200, 502) and where not in failed.text, failed.text

    def broken_load():
        raise CheckpointError("no weights in /srv/secret/models/sam3")

    app = create_app(ServeSettings(model="/srv/secret/models/sam3"), engine_factory=broken_load)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert wait_for(lambda: "failed" in client.get("/readyz").json()["detail"])
        ready = client.get("/readyz")
        segment = client.post("/v1/segment", json=segment_body(image_png))
    assert ready.status_code == 503 and "no weights" in ready.json()["detail"]
    assert "/srv/secret" not in ready.text and "/srv/secret" not in segment.text


def test_row16_token_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    from cli.serve import _token, add_serving_commands

    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    assert _token(argparse.Namespace(token_file=str(secret), token="argv")) == "from-a-file"
    monkeypatch.setenv("SAM3_AGENT_TOKEN", "from-env")
    parser = argparse.ArgumentParser()
    add_serving_commands(parser.add_subparsers(dest="command"))
    assert _token(parser.parse_args(["serve"])) == "from-env"
    assert _token(parser.parse_args(["serve", "--token-file", str(secret)])) == "from-a-file"


# ------------------------------------------------------------------------------------------ admission


def test_engine_admission_error_is_413_naming_the_limit():
    class WorkAdmissionError(InputError):
        limit = "max_work"

    error = classify(WorkAdmissionError("the request needs 9e9 units of work, over the limit max_work=1e9"))
    assert error.status == 413 and error.code == "over_budget" and "max_work" in error.message


def test_redacted_messages_of_lower_layers():
    error = classify(InputError("cannot open /tmp/sam3-video-x1/upload.mp4 from http://10.1.2.3:8000/v1"))
    assert "/tmp/" not in error.message and "10.1.2.3" not in error.message and "cannot open" in error.message

