"""Helpers shared by the HTTP API tests: image encodings, a server over given engines, SSE parsing, a tiny
video engine."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from agent.settings import AgentSettings
from serving.config import ServeSettings
from serving.http.app import create_app
from serving.http.server import BackgroundServer

SEED = 4242
#: The tiny checkpoint has random weights (scores about 0.25), so the servers run with ``score_threshold=0.2``.
AGENT = AgentSettings(score_threshold=0.2)


def png_of(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decode_png(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def serve(engine, video_engine=None, **settings: Any) -> BackgroundServer:
    """A background server over ``engine`` (and ``video_engine``) with ``ServeSettings(**settings)``."""
    settings = {"agent": AGENT, **settings}
    return BackgroundServer(create_app(ServeSettings(model="tiny", **settings), engine=engine,
                                       video_engine=video_engine))


@contextlib.contextmanager
def client_of(server: BackgroundServer, timeout: float = 120) -> Iterator[httpx.Client]:
    """Start ``server`` and yield a client of it; both are closed on exit."""
    with server, httpx.Client(base_url=server.base_url, timeout=timeout) as client:
        yield client


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    """The server-sent events of a streamed response, checking each ``event:`` matches its ``type``."""
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            event = json.loads(line[len("data: "):])
            assert event["type"] == name
            events.append(event)
    return events


@contextlib.contextmanager
def tiny_video_engine(folder: Path, **options: Any):
    """A :class:`VideoEngine` over a tiny video checkpoint written into ``folder`` (thresholds low enough for
    random weights to find objects)."""
    from sam3_core.tiny import write_tiny_checkpoint
    from sam3_core.video import VideoEngine, VideoOptions

    checkpoint = write_tiny_checkpoint(folder, video=True, seed=0)
    options = {"max_sessions": 2, "score_threshold": 0.05, "new_object_threshold": 0.1, "hotstart_delay": 2,
               **options}
    with VideoEngine.from_pretrained(str(checkpoint), device="cpu", options=VideoOptions(**options)) as engine:
        yield engine
