"""Regression tests of issue 11's serving rows 6-12 (metrics labels, stored conversations, URL fetches, cancelled
runs, the state file): each test is named after its row and attacks the server the way the issue's reproduction did
(on 127.0.0.1 only, with bounded loops and the tiny engine). Rows 13-16: test_hardening_edge.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest
import serving_hardening_fixtures
from http_helpers import ImageSite, closed_port, metric_samples, serve, wait_for
from serving_hardening_fixtures import agent_body, llm_config, segment_body

from agent.settings import AgentSettings
from agent.testing import Reply
from serving.chat.store import ChatStore

image_png, llm = serving_hardening_fixtures.image_png, serving_hardening_fixtures.llm  # shared fixtures, by name


def tool_call(name: str, **arguments: Any) -> Reply:
    return Reply.text(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")


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
