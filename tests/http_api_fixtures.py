"""Fixtures of the HTTP API tests: the test image, a shared server without token or LLM, a scripted LLM server that
must be used up; and the helpers to script tool calls for it.

A test module takes a fixture by name (``api = http_api_fixtures.api``): not a plugin, whose fixtures every module
of the session would see under these common names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import random_image
from http_helpers import AGENT, SEED, png_of

from agent.llm import LLMConfig
from agent.testing import Reply, ScriptedLLM
from serving.config import ServeSettings
from serving.http.app import create_app
from serving.http.server import BackgroundServer


def call(name: str, **arguments: Any) -> Reply:
    """A scripted reply calling ``name`` in the text tool protocol."""
    return Reply.text(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")


def llm_config(server: ScriptedLLM) -> LLMConfig:
    return LLMConfig(base_url=server.base_url, model=server.model, api_key="test", timeout_s=20.0, max_retries=0,
                     tool_protocol="text")


@pytest.fixture(scope="module")
def image_png() -> bytes:
    return png_of(random_image(np.random.default_rng(SEED)))


@pytest.fixture(scope="module")
def api(engine) -> Iterator[httpx.Client]:
    """A server without token or LLM, shared by the module's segmentation tests."""
    with BackgroundServer(create_app(ServeSettings(model="tiny", agent=AGENT), engine=engine)) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client

