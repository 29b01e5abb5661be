"""Regression tests of issue 11's serving rows at the network edge (rows 13-16 and admission): cross-site requests,
slow clients, byte limits checked before reading, what errors disclose, where the token comes from. Each test is
named after its row and attacks the server the way the issue's reproduction did (on 127.0.0.1 only, with bounded
loops and the tiny engine)."""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

import httpx
import pytest
import serving_hardening_fixtures
from http_helpers import serve, wait_for
from serving_hardening_fixtures import agent_body, llm_config, segment_body

from agent.testing import Reply
from sam3_core.errors import CheckpointError, InputError
from serving.config import ServeSettings
from serving.http.app import create_app
from serving.http.errors import classify
from serving.http.server import BackgroundServer

image_png, llm = serving_hardening_fixtures.image_png, serving_hardening_fixtures.llm  # shared fixtures, by name


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
    from sam3_core.errors import AdmissionError, ImageTooLarge

    budget = AdmissionError("the request needs ~3.1 GiB, over max_request_bytes=2 GiB", limit="max_request_bytes",
                            value=3.1 * 2**30, maximum=2 * 2**30)
    error = classify(budget)
    assert error.status == 413 and error.code == "over_budget" and "max_request_bytes" in error.message
    pixels = ImageTooLarge("the image has 64000000 pixels, over max_pixels=25000000", limit="max_pixels",
                           value=64e6, maximum=25e6)
    assert classify(pixels).status == 413 and "max_pixels" in classify(pixels).message
    assert classify(InputError("bad phrase")).status == 400  # other input errors stay 400


def test_redacted_messages_of_lower_layers():
    error = classify(InputError("cannot open /tmp/sam3-video-x1/upload.mp4 from http://10.1.2.3:8000/v1"))
    assert "/tmp/" not in error.message and "10.1.2.3" not in error.message and "cannot open" in error.message
