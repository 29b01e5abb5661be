"""The chat page with a video clip, in a real headless Chromium: a question about the clip is answered by the
video agent (``/v1/chat/clips``), its steps listed, the chosen masklets named with their frames and drawn on
keyframes; a follow-up continues the agent's thread and picks one of the earlier masklets."""

from __future__ import annotations

import re

import pytest
from http_helpers import tiny_video_engine
from test_chat import _chromium_missing, chat_page
from test_chat_clip_thread import thread_responder
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
    with ScriptedLLM(responder=thread_responder()) as llm, tiny_video_engine(tmp_path / "tiny") as video_engine:
        config = LLMConfig(base_url=llm.base_url, model=llm.model, api_key="t", timeout_s=20.0, max_retries=0)
        settings = ServeSettings(model="tiny", llm=config, agent=AgentSettings(score_threshold=0.2), video=True)
        server = BackgroundServer(create_app(settings, engine=engine, video_engine=video_engine))
        with server, chat_page(server.base_url, tmp_path) as page:
            page.set_input_files("#image-input", str(clip))
            page.wait_for_selector("#message-input:enabled", timeout=20_000)
            caption = page.locator("#view-caption").inner_text()
            for index, message in enumerate(("the discs", "now only the one on the left"), start=1):
                page.fill("#message-input", message)
                page.click("#send-button")
                page.wait_for_selector(f".turn:nth-child({index}) .answer-text", timeout=120_000)
            answers = page.locator(".answer-text").all_inner_texts()
            first = page.locator(".turn:nth-child(1) .masklet").all_inner_texts()
            second = page.locator(".turn:nth-child(2) .masklet").all_inner_texts()
            overlays = page.locator("img.clip-overlay").count()
            steps = page.locator(".turn:nth-child(1) .step-tool_call").count()
            assert page.locator("#view-video").is_visible() and not page.locator("#view-image").is_visible()
        assert not llm.errors, llm.errors
    assert caption == "clip.mp4: 6 frames" and steps >= 1
    pattern = r"masklet (\d+) \(disc\): frames \d+–\d+ \(\d+ of 6\)"
    if answers[0].startswith("Answer: masklet(s)"):
        ids = [int(re.fullmatch(pattern, line).group(1)) for line in first]
        assert answers[1] == f"Answer: masklet(s) {min(ids)}"  # the follow-up chose an earlier masklet
        assert second == [line for line in first if line.startswith(f"masklet {min(ids)} ")]
        assert overlays == 2  # one drawing of keyframes per answer
    else:
        assert answers == ["Nothing in the clip matches."] * 2 and first == second == [] and overlays == 0
