"""Fixtures for the in-process LLM tests: tiny random Qwen2.5-VL / Qwen3-VL / Llama 4 checkpoints, one CPU thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from agent.backends.tiny_llm import FAMILIES, write_tiny_llm


@pytest.fixture(scope="session")
def tiny_llm_folder(tmp_path_factory) -> Callable[[str], str]:
    """``folder(family)``: the tiny random checkpoint of ``family``, written once per session."""
    made: dict[str, str] = {}

    def folder(family: str) -> str:
        if family not in made:
            made[family] = str(write_tiny_llm(tmp_path_factory.mktemp(f"tiny_{family}"), family))
        return made[family]

    return folder


@pytest.fixture(scope="session", params=FAMILIES)
def tiny_llm(request, tiny_llm_folder) -> str:
    """The folder of a tiny random checkpoint of each family."""
    return tiny_llm_folder(request.param)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """A tiny model decodes several times faster on one thread than on oversubscribed cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
