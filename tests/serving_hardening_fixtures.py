"""Fixtures and request bodies of the serving hardening tests (test_hardening_serving, test_hardening_edge).

A test module takes a fixture by name (``llm = serving_hardening_fixtures.llm``): not a plugin, whose fixtures every
module of the session would see under these common names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import random_image
from http_helpers import b64, png_of

from agent.llm import LLMConfig
from agent.testing import ScriptedLLM

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


def segment_body(image_png: bytes) -> dict[str, Any]:
    return {"image": {"base64": b64(image_png)}, "phrases": ["cup"]}


def agent_body(image_png: bytes) -> dict[str, Any]:
    return {"image": {"base64": b64(image_png)}, "query": "the cup"}
