"""The chat page with a video clip, in a real headless Chromium: a question about the clip is answered by the
video agent (``POST /v1/video/agent``), its steps listed and the chosen masklets named with their frames."""

from __future__ import annotations

import re

import pytest
from http_helpers import tiny_video_engine
from test_chat import _chromium_missing, chat_page
from test_video_agent_http import choosing_responder
from video_fixtures import moving_shapes, write_mp4

from agent.llm import LLMConfig
from agent.settings import AgentSettings
from agent.testing import ScriptedLLM
from serving.config import ServeSettings
from serving.http.app import create_app
from serving.http.server import BackgroundServer


@pytest.mark.skipif(_chromium_missing() is not None, reason=str(_chromium_missing()))
def test_chat_page_answers_about_a_clip(engine, tmp_path):
    clip = write_mp4(moving_shapes(6), tmp_path / "clip.mp4", gop=5)
    with ScriptedLLM(responder=choosing_responder()) as llm, tiny_video_engine(tmp_path / "tiny") as video_engine:
        config = LLMConfig(base_url=llm.base_url, model=llm.model, api_key="t", timeout_s=20.0, max_retries=0)
        settings = ServeSettings(model="tiny", llm=config, agent=AgentSettings(score_threshold=0.2), video=True)
        server = BackgroundServer(create_app(settings, engine=engine, video_engine=video_engine))
        with server, chat_page(server.base_url, tmp_path) as page:
            page.set_input_files("#image-input", str(clip))
            page.wait_for_selector("#message-input:enabled", timeout=20_000)
            page.fill("#message-input", "the red disc")
            page.click("#send-button")
            page.wait_for_selector(".turn:nth-child(1) .answer-text", timeout=120_000)
            answer = page.locator(".answer-text").inner_text()
            masklets = page.locator(".masklet").all_inner_texts()
            steps = page.locator(".turn:nth-child(1) .step-tool_call").count()
            assert page.locator("#view-video").is_visible() and not page.locator("#view-image").is_visible()
        assert not llm.errors, llm.errors
    assert steps >= 1
    if answer.startswith("Answer: masklet(s)"):
        [line] = masklets
        assert re.fullmatch(r"masklet \d+ \(disc\): frames \d+–\d+ \(\d+ of 6\)", line), line
    else:
        assert answer == "Nothing in the clip matches." and masklets == []
