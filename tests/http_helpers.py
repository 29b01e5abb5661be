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


#: Tolerances for comparing results across batch sizes or code paths (float arithmetic may flip a pixel on the
#: mask's edge or move the last digits of a score; it never changes more than this).
MAX_DIFF_FRACTION = 1e-3
SCORE_ATOL = 1e-4
BOX_ATOL = 1.0


def differing_fraction(first: np.ndarray, second: np.ndarray) -> float:
    """The fraction of pixels where two ``(H, W)`` bool masks of the same shape disagree."""
    assert first.shape == second.shape, (first.shape, second.shape)
    return float(np.count_nonzero(first != second)) / first.size


def assert_masks_close(first: np.ndarray, second: np.ndarray, max_fraction: float = MAX_DIFF_FRACTION) -> None:
    """Two masks agree on all but ``max_fraction`` of their pixels (and neither is empty unless both are)."""
    assert bool(first.any()) == bool(second.any())
    assert differing_fraction(first, second) <= max_fraction, differing_fraction(first, second)


def assert_instances_close(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Two lists of JSON instances (``score``, ``box_xyxy``, ``rle``) agree within the stated tolerances."""
    from sam3_core.postprocess import rle_to_mask

    assert len(got) == len(expected)
    for one, other in zip(got, expected):
        assert abs(one["score"] - other["score"]) <= SCORE_ATOL
        np.testing.assert_allclose(one["box_xyxy"], other["box_xyxy"], atol=BOX_ATOL)
        assert_masks_close(rle_to_mask(one["rle"]), rle_to_mask(other["rle"]))
