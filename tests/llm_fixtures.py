"""Fixtures for the in-process LLM tests: tiny random Qwen2.5-VL / Qwen3-VL checkpoints, one CPU thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from agent.backends.tiny_llm import FAMILIES, write_tiny_llm


@pytest.fixture(scope="session", params=FAMILIES)
def tiny_llm(request, tmp_path_factory) -> str:
    """The folder of a tiny random checkpoint of each family (written once per session)."""
    return str(write_tiny_llm(tmp_path_factory.mktemp(f"tiny_{request.param}"), request.param))


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """A tiny model decodes several times faster on one thread than on oversubscribed cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
