"""A first run that works or says why: inputs checked before any model loads, and the default hub model
failing in seconds, with what to do, when the hub cannot be reached or the repo is gated.

The hub tests change ``huggingface_hub.constants`` (read at call time) rather than the environment, and
point the cache at an empty folder so a machine that has ``facebook/sam3`` cached behaves the same.
"""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from sam3_core.errors import CheckpointError
from sam3_core.hub import hub_access


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path)
    return path


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return constants


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("argv, expected", [
    (["segment-phrase", "{tmp}/missing.jpg", "-p", "cat"], "no such image"),
    (["segment-phrase", "{tmp}/notes.txt", "-p", "cat"], "is not an image"),
    (["segment-phrase", "{tmp}/empty", "-p", "cat"], "holds no images"),
    (["segment-phrase", "{tmp}/*.gif", "-p", "cat"], "no file matches"),
    (["segment-phrase", "{image}"], "no phrase given"),
    (["segment-phrase", "{image}", "-p", " "], "empty phrase"),
    (["segment-phrase", "http://", "-p", "cat"], "not a well-formed"),
    (["segment-phrase", "{image}", "-p", "cat", "--out", "{tmp}"], "is a folder"),
    (["segment", "{image}", "-q", "  ", "--out", "{tmp}/run"], "query is empty"),
    (["segment", "{image}", "--out", "{tmp}/run"], "give the images and then the query"),
    (["track", "{tmp}/missing.mp4", "cat"], "no such video"),
])
def test_bad_input_is_refused_before_any_model_loads(argv, expected, tmp_path, image, caplog):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, image=image) for a in argv]
    # The default hub model is never reached: the input is refused first (HF_HUB_OFFLINE is set in tests).
    assert main(argv) == 2
    assert expected in caplog.text
    assert "HF_HUB_OFFLINE" not in caplog.text


def test_offline_default_model_fails_with_what_to_do(image, empty_cache, monkeypatch, caplog):
    monkeypatch.setattr(empty_cache, "HF_HUB_OFFLINE", True)
    assert main(["segment-phrase", str(image), "-p", "cat", "--out", "-"]) == 2
    for hint in ("facebook/sam3", "HF_HUB_OFFLINE", "hf auth login", "HF_TOKEN", "--model PATH",
                 "make-tiny-checkpoint"):
        assert hint in caplog.text, hint


def test_unreachable_hub_fails_at_once_with_the_endpoint(image, empty_cache, monkeypatch, caplog):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(empty_cache, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(empty_cache, "ENDPOINT", endpoint)
    assert main(["segment-phrase", str(image), "-p", "cat"]) == 2
    for hint in (f"cannot reach the Hugging Face hub at {endpoint}", "HF_TOKEN", "--model PATH", "HF_HUB_OFFLINE"):
        assert hint in caplog.text, hint
    assert "Retrying" not in caplog.text


class _GatedHub(http.server.BaseHTTPRequestHandler):
    """Answers every request as the hub does for a gated repo the caller has no access to."""

    def _gated(self) -> None:
        self.send_response(403)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", "Access to model facebook/sam3 is restricted.")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = _gated

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def gated_hub(empty_cache, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GatedHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(empty_cache, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(empty_cache, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield empty_cache.ENDPOINT
    server.shutdown()
    server.server_close()


def test_gated_repo_says_how_to_get_access(gated_hub):
    with pytest.raises(CheckpointError) as exc:
        hub_access("facebook/sam3")
    message = str(exc.value)
    assert "gated" in message and f"{gated_hub}/facebook/sam3" in message
    assert "hf auth login" in message and "HF_TOKEN" in message and "--model PATH" in message


def test_local_paths_are_never_looked_up_on_the_hub(tmp_path):
    assert hub_access(str(tmp_path)) == {}
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        hub_access(str(tmp_path / "missing"))
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        hub_access("./ckpt")
