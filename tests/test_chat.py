"""Chat-style segmentation: follow-ups that change the answer, conversations kept in SQLite across a server
restart, and the chat page driven in a real headless Chromium (Debian's ``/usr/bin/chromium``).

The LLM is the scripted OpenAI-compatible server; the tiny SAM 3 engine runs with ``score_threshold=0.2``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import random_image
from PIL import Image

from agent.llm import LLMConfig
from agent.settings import AgentSettings
from agent.testing import Reply, ScriptedLLM, message_texts
from sam3_core.postprocess import rle_to_mask
from serving.chat.routes import compose_query
from serving.config import ServeSettings
from serving.http.app import create_app
from serving.http.server import BackgroundServer

SEED = 5151
CHROMIUM = os.environ.get("SAM3_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run"]


@contextlib.contextmanager
def chat_page(base_url: str, tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium page (Debian's /usr/bin/chromium through Playwright) opened on ``base_url``'s /chat."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(Path(shutil.which(CHROMIUM) or CHROMIUM)),
            headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1100, "height": 800})
        try:
            page = browser.new_page()
            page.goto(f"{base_url}/chat")
            yield page
        finally:
            browser.close()


def call(name: str, **arguments: Any) -> Reply:
    return Reply.text(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")


@pytest.fixture
def image_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(random_image(np.random.default_rng(SEED))).save(buffer, format="PNG")
    return buffer.getvalue()



def chat_server(engine, llm: ScriptedLLM, state_db: str | None = None) -> BackgroundServer:
    config = LLMConfig(base_url=llm.base_url, model=llm.model, api_key="t", timeout_s=20.0, max_retries=0,
                       tool_protocol="text")
    settings = ServeSettings(model="tiny", llm=config, agent=AgentSettings(score_threshold=0.2), state_db=state_db)
    return BackgroundServer(create_app(settings, engine=engine))


def say(client: httpx.Client, conversation: str, message: str) -> dict[str, Any]:
    response = client.post(f"/v1/chat/{conversation}/messages", json={"message": message})
    assert response.status_code == 200, response.text
    return response.json()


def test_compose_query_quotes_the_earlier_answers():
    turns = [{"message": "the cups", "answer": {"status": "answered", "mask_ids": [1, 2]}},
             {"message": "the giraffe", "answer": {"status": "no_mask", "mask_ids": []}}]
    query = compose_query("only the left one", turns, keep=3)
    assert '- the user asked "the cups"; the answer was mask(s) [1, 2].' in query
    assert '"the giraffe"; nothing in the image matched' in query
    assert query.splitlines()[-2] == "Now the user says: only the left one"
    assert compose_query("the cups", [], keep=3) == "the cups"
    assert "the cups" not in compose_query("x", turns, keep=1)


def test_follow_up_changes_the_answer_and_survives_a_restart(engine, llm, image_png, tmp_path):
    state_db = str(tmp_path / "chat.sqlite")
    llm.add(call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[1]),
            call("segment_phrase", text_prompt="woman"), call("select_masks_and_return", mask_ids=[1, 2]))
    with chat_server(engine, llm, state_db) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        created = client.post("/v1/chat", files={"image": ("kitchen.png", image_png, "image/png")})
        assert created.status_code == 200, created.text
        conversation = created.json()["conversation_id"]
        first = say(client, conversation, "the cup")
        second = say(client, conversation, "also the woman")
    assert first["mask_ids"] == [1] and second["mask_ids"] == [1, 2]
    assert second["query"] == "also the woman" and second["turn_index"] == 1
    follow_up = "\n".join(message_texts(llm.requests[2]))
    assert '- the user asked "the cup"; the answer was mask(s) [1].' in follow_up
    assert "Now the user says: also the woman" in follow_up
    assert "Masks found for earlier queries on this image are still available" in follow_up

    llm.add(call("select_masks_and_return", mask_ids=[2]))  # no new segment: mask 2 must come from SQLite
    with chat_server(engine, llm, state_db) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        kept = client.get(f"/v1/chat/{conversation}").json()
        assert [t["message"] for t in kept["turns"]] == ["the cup", "also the woman"]
        third = say(client, conversation, "only the woman")
        assert third["status"] == "answered" and third["mask_ids"] == [2] and third["steps"] == 1
        assert third["masks"][0]["phrase"] == "woman"
        download = client.get(f"/v1/chat/{conversation}/turns/2/mask.png")
        assert download.headers["content-type"] == "image/png"
        assert "attachment" in download.headers["content-disposition"]
        mask = np.asarray(Image.open(io.BytesIO(download.content))) > 0
        assert np.array_equal(mask, rle_to_mask(third["masks"][0]["rle"])) and mask.any()
        image = client.get(f"/v1/chat/{conversation}/image")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.content))),
                              np.asarray(Image.open(io.BytesIO(image_png))))
        assert client.get("/v1/chat/chat-nope").status_code == 404
        assert client.get(f"/v1/chat/{conversation}/turns/9/mask.png").status_code == 404
        assert client.post("/v1/chat/chat-nope/messages", json={"message": "x"}).status_code == 404


def _chromium_missing() -> str | None:
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SAM3_TEST_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@pytest.mark.skipif(_chromium_missing() is not None, reason=str(_chromium_missing()))
def test_chat_page_in_headless_chromium(engine, llm, image_png, tmp_path):
    image_file = tmp_path / "kitchen.png"
    image_file.write_bytes(image_png)
    llm.add(call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[1]),
            call("segment_phrase", text_prompt="woman"), call("select_masks_and_return", mask_ids=[2]))
    with chat_server(engine, llm) as server, chat_page(server.base_url, tmp_path) as page:
        page.set_input_files("#image-input", str(image_file))
        page.wait_for_selector("#message-input:enabled", timeout=20_000)
        for message, expected in (("the cup", 1), ("only the woman", 2)):
            page.fill("#message-input", message)
            page.click("#send-button")
            page.wait_for_selector(f".turn:nth-child({expected}) img.final-overlay", timeout=30_000)
        screenshot = page.screenshot(full_page=True)
        texts = page.locator(".answer-text").all_inner_texts()
        href = page.locator(".turn:nth-child(2) a.download").get_attribute("href")
        steps = page.locator(".turn:nth-child(1) img.step-overlay").count()
        assert page.locator("#view-image").is_visible()
    if os.environ.get("SAM3_TEST_ARTIFACTS"):  # keep the screenshot for a person to look at
        Path(os.environ["SAM3_TEST_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["SAM3_TEST_ARTIFACTS"]) / "chat_page.png").write_bytes(screenshot)
    assert texts == ["Answer: mask(s) 1", "Answer: mask(s) 2"]
    assert steps >= 1  # the overlay after segment_phrase is shown among the steps
    assert href.startswith("data:image/png;base64,")
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1])))) > 0
    assert mask.shape == (90, 120) and mask.any()
    shot = np.asarray(Image.open(io.BytesIO(screenshot)).convert("RGB")).astype(np.float32)
    assert shot.shape[0] >= 700 and shot.shape[1] >= 1000
    assert shot.std() > 10, "the screenshot is blank"
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 200  # images, not just flat page colours
