"""Shared fixtures: a tiny random SAM 3 checkpoint written once per session, and engines over it.

Nothing here touches the network: ``HF_HUB_OFFLINE`` is forced so an accidental hub lookup fails
fast instead of hanging, and the checkpoint is loaded through the same ``from_pretrained`` path a
real ``facebook/sam3`` download takes.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from agent.testing import ScriptedLLM, ScriptedModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    from sam3_core.tiny import write_tiny_checkpoint

    return str(write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_sam3"), seed=0))


@pytest.fixture(scope="session")
def video_checkpoint(tiny_checkpoint) -> str:
    """The tiny checkpoint: it has the video processor files too (one checkpoint serves every command)."""
    return tiny_checkpoint


@pytest.fixture(scope="session")
def image_only_checkpoint(tmp_path_factory) -> str:
    """A tiny checkpoint without the video files (``make-tiny-checkpoint --image-only``)."""
    from sam3_core.tiny import write_tiny_checkpoint

    return str(write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_sam3_image"), video=False, seed=0))


@pytest.fixture(scope="session")
def engine(tiny_checkpoint):
    from sam3_core import Sam3Engine

    with Sam3Engine.from_pretrained(tiny_checkpoint, device="cpu") as eng:
        yield eng


@pytest.fixture(scope="module")
def video_engine(tmp_path_factory):
    """A tiny random SAM 3 video engine (thresholds low enough for random weights to find objects), one per
    test module; a module defines its own to change it."""
    from http_helpers import tiny_video_engine

    with tiny_video_engine(tmp_path_factory.mktemp("tiny_sam3_video")) as engine:
        yield engine


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 6-frame mp4 of moving shapes (``video_fixtures.moving_shapes``), written once per test module."""
    from video_fixtures import moving_shapes, write_mp4

    return write_mp4(moving_shapes(6), tmp_path_factory.mktemp("clips") / "clip.mp4", gop=5)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def random_image(rng: np.random.Generator, height: int = 90, width: int = 120) -> np.ndarray:
    """A random RGB image with some structure (blocks), so features differ between images."""
    base = rng.integers(0, 256, size=(height // 10 + 1, width // 10 + 1, 3), dtype=np.uint8)
    image = np.kron(base, np.ones((10, 10, 1), dtype=np.uint8))[:height, :width]
    noise = rng.integers(0, 30, size=image.shape, dtype=np.uint8)
    return (image // 2 + noise).astype(np.uint8)


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    """A started :class:`ScriptedLLM` with an empty script; fails the test if it met a problem."""
    with ScriptedLLM() as server:
        yield server
    assert not server.errors, f"ScriptedLLM problems: {server.errors}"


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    """A started :class:`ScriptedLLM` that must end with no problems and no scripted replies left over (modules
    whose runs may leave replies define their own)."""
    with ScriptedLLM() as server:
        yield server
    assert not server.errors, server.errors
    assert server.remaining == 0, "scripted replies left over"


@pytest.fixture
def scripted_model() -> Iterator[ScriptedModel]:
    """An in-process :class:`ScriptedModel` (no sockets) with an empty script; fails the test on a problem."""
    model = ScriptedModel()
    yield model
    assert not model.errors, f"ScriptedModel problems: {model.errors}"


def load_bench(name: str) -> ModuleType:
    """The benchmark script ``bench/<name>.py`` imported as ``bench.<name>`` (as ``python -m bench.<name>`` runs it)
    to run its ``main(argv)`` in process.

    The ``bench`` package is loaded from its folder: the repository root need not be importable in the test
    process (``pytest`` run from the virtual environment imports only the installed packages), and the scripts'
    own ``from bench.report import ...`` then resolves inside that folder.
    """
    if "bench" not in sys.modules:
        folder = ROOT / "bench"
        spec = importlib.util.spec_from_file_location("bench", folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["bench"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"bench.{name}")
