"""agent.testing: the scripted model in process (httpx transport) and over HTTP, through the real openai client."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from pydantic import BaseModel

from agent import tool_protocol as tp
from agent.llm import LLMClient
from agent.runner import run_agent
from agent.settings import AgentSettings
from agent.testing import IN_PROCESS_BASE_URL, Reply, ScriptedLLM, ScriptedModel, message_texts
from eval.testing import AgentScript
from sam3_core.errors import RunFailed

FAST = {"max_retries": 2, "backoff_initial_s": 0.001, "backoff_max_s": 0.002, "timeout_s": 2.0}


class Prompt(BaseModel):
    text_prompt: str


TOOLS = [tp.ToolSpec("segment_phrase", "Segment a phrase.", Prompt)]
USER = [{"role": "user", "content": "find the cat"}]


async def _chat(client: LLMClient, tools=TOOLS):
    async with client as llm:
        return await llm.chat(USER, tools), llm.usage


def chat(client: LLMClient, tools=TOOLS):
    return asyncio.run(_chat(client, tools))


@pytest.fixture(params=["in_process", "http"])
def scripted(request):
    """Both ways of serving a script; the tests below must behave the same on each."""
    if request.param == "in_process":
        yield ScriptedModel()
    else:
        with ScriptedLLM() as server:
            yield server


def client_of(scripted: ScriptedModel | ScriptedLLM, **overrides) -> LLMClient:
    if isinstance(scripted, ScriptedModel):
        return scripted.client(**{**FAST, **overrides})
    return LLMClient(scripted.config(**{**FAST, **overrides}))


def test_text_and_native_calls_are_parsed_on_both_backends(scripted):
    scripted.add(Reply.text_call("segment_phrase", text_prompt="cat"), Reply.call("segment_phrase", text_prompt="dog"))
    reply, usage = chat(client_of(scripted))
    assert reply.tool_call.name == "segment_phrase" and reply.tool_call.parsed == Prompt(text_prompt="cat")
    native, _ = chat(client_of(scripted, tool_protocol="native"))
    assert native.tool_call.arguments == {"text_prompt": "dog"}
    assert usage.calls == 1 and usage.total_tokens == 15
    (first, second) = scripted.requests
    assert message_texts(first, "user") == ["find the cat"] and first["model"] == "scripted-model"
    assert second["tools"][0]["function"]["name"] == "segment_phrase"
    assert scripted.request_headers[0]["authorization"] == "Bearer scripted"
    assert scripted.remaining == 0 and scripted.errors == []


def test_retries_and_exhausted_script_on_both_backends(scripted):
    scripted.add(Reply.error(503), "ok")
    reply, usage = chat(client_of(scripted), tools=None)
    assert reply.text == "ok" and usage.retries == 1
    with pytest.raises(RunFailed) as info:
        chat(client_of(scripted, max_retries=0), tools=None)
    assert info.value.cause == "llm_unavailable" and scripted.base_url in str(info.value)
    assert len(scripted.errors) == 1 and "script exhausted" in scripted.errors[0]


def test_model_discovered_from_models_route(scripted):
    scripted.model = "served-model"
    scripted.add("hello")
    reply, _ = chat(client_of(scripted, model=""), tools=None)
    assert reply.text == "hello" and scripted.requests[0]["model"] == "served-model"


def test_slow_reply_times_out_like_a_real_connection():
    model = ScriptedModel([Reply.text("slow", delay_s=5.0), "fast"])
    reply, usage = chat(model.client(**{**FAST, "timeout_s": 0.05}), tools=None)
    assert reply.text == "fast" and usage.retries == 1  # the slow reply was consumed by the timed-out attempt
    with pytest.raises(RunFailed) as info:
        chat(ScriptedModel([Reply.text("slow", delay_s=5.0)]).client(**{**FAST, "timeout_s": 0.05,
                                                                             "max_retries": 0}), tools=None)
    assert info.value.cause == "llm_timeout"


def test_responder_answers_concurrent_requests_by_content():
    def respond(body):
        return Reply.text(message_texts(body, "user")[-1].upper())

    model = ScriptedModel(responder=respond)

    async def many():
        async with model.client(**FAST) as llm:
            return await asyncio.gather(*(llm.chat([{"role": "user", "content": f"q{i}"}]) for i in range(8)))

    replies = asyncio.run(many())
    assert [r.text for r in replies] == [f"Q{i}" for i in range(8)]
    assert len(model.requests) == 8


def test_responder_crash_and_bad_json_are_recorded():
    model = ScriptedModel(responder=lambda body: 1 / 0)
    with httpx.Client(transport=model.transport(), base_url=IN_PROCESS_BASE_URL) as http:
        crashed = http.post("/chat/completions", json={"messages": []})
        bad = http.post("/chat/completions", content=b"{not json")
        missing = http.get("/nothing")
        models = http.get("/models")
    assert crashed.status_code == bad.status_code == 500
    assert "responder raised ZeroDivisionError" in crashed.json()["error"]["message"]
    assert missing.status_code == 404 and models.json()["data"][0]["id"] == "scripted-model"
    assert len(model.errors) == 2 and "not JSON" in model.errors[1]


def test_raw_body_and_headers_are_sent_verbatim(scripted_model):
    scripted_model.add(Reply(raw_body='{"weird": true}', status=429, headers={"retry-after": "0"}))
    with httpx.Client(transport=scripted_model.transport(), base_url=IN_PROCESS_BASE_URL) as http:
        response = http.post("/chat/completions", json={"messages": []})
    assert response.status_code == 429 and response.headers["retry-after"] == "0"
    assert json.loads(response.text) == {"weird": True}


def test_run_agent_with_the_in_process_model(engine):
    """The README's example: the whole agent against a ScriptedModel, no sockets."""
    script = AgentScript(delay_s=0.0)
    model = ScriptedModel(responder=script)

    async def answer():
        async with model.client() as llm:
            return await run_agent(engine, llm, _image(), "where is the dog?",
                                   settings=AgentSettings(score_threshold=0.2))

    result = asyncio.run(answer())
    assert script.queries == ["where is the dog?"]
    # the tiny model scores about 0.25, above the 0.2 threshold: segment_phrase finds masks and they are chosen
    assert result.status == "answered" and result.masks.shape[0] == len(result.mask_ids) >= 1
    assert result.usage.calls == len(model.requests) == 2 and model.errors == []


def _image():
    import numpy as np

    rng = np.random.default_rng(7)
    return np.kron(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8), np.ones((10, 10, 1), dtype=np.uint8))
