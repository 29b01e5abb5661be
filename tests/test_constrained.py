"""Constrained tool calls: grammars from the tools' schemas, random-weight models that cannot make an
invalid call, the same models failing as before without constraints, and grammars sent to servers."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch
from conftest import random_image

from agent import tool_protocol as tp
from agent.backends.constrain import GrammarCompiler
from agent.backends.grammar import LIBRARIES, MAX_STRING_CHARS, CallGrammar, call_schema
from agent.backends.logits import ConstrainedLogits
from agent.backends.requests import call_grammar
from agent.backends.tiny_llm import build_tokenizer
from agent.call_choices import call_choices
from agent.llm import LLMClient, LLMConfig
from agent.runner import run_agent_sync
from agent.settings import AgentSettings
from agent.state import State
from agent.testing import Reply, ScriptedLLM
from sam3_core.errors import UsageError
from tools.registry import specs
from tools.segmentation import ALL_TOOLS

SPECS = specs(ALL_TOOLS)
IDS = tp.CallChoices(values={"mask_ids": (1, 4)})

pytest_plugins = ["llm_fixtures"]  # tiny_llm (both families), one_torch_thread
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def local(folder: str, **kw) -> LLMConfig:
    """A small, fast configuration of the in-process backend for random-weight models."""
    return LLMConfig(base_url=f"hf:{folder}", **{"max_tokens": 260, "max_prose_tokens": 60, **kw})


# ------------------------------------------------------------------ the grammar


def test_schema_narrows_ids_and_bounds_strings():
    schema = call_schema(SPECS, IDS)
    by_name = {o["properties"]["name"]["const"]: o["properties"]["arguments"] for o in schema["anyOf"]}
    assert set(by_name) == {"segment_phrase", "examine_each_mask", "select_masks_and_return", "report_no_mask"}
    ids = by_name["select_masks_and_return"]["properties"]["mask_ids"]
    assert ids["items"] == {"enum": [1, 4]} and ids["maxItems"] == 2 and ids["minItems"] == 1
    phrase = by_name["segment_phrase"]["properties"]["text_prompt"]
    assert phrase["maxLength"] == MAX_STRING_CHARS and phrase["minLength"] == 1
    assert all(a["additionalProperties"] is False for a in by_name.values())


def test_tools_that_cannot_be_called_are_left_out():
    no_masks = call_schema(SPECS, tp.CallChoices(values={"mask_ids": ()}))
    names = {o["properties"]["name"]["const"] for o in no_masks["anyOf"]}
    assert "select_masks_and_return" not in names and "report_no_mask" in names
    only = call_schema(SPECS, tp.CallChoices(tools=("report_no_mask",)))
    assert only["properties"]["name"] == {"const": "report_no_mask"}
    with pytest.raises(UsageError, match="no tool can be called"):
        call_schema(SPECS, tp.CallChoices(tools=()))


@pytest.fixture(scope="module", params=LIBRARIES)
def compiler(request) -> GrammarCompiler:
    tokenizer = build_tokenizer("qwen2_5_vl")
    return GrammarCompiler(tokenizer, len(tokenizer), request.param)


def accepts(compiler: GrammarCompiler, grammar: CallGrammar, text: str) -> bool:
    """Whether ``text`` followed by the end token is a complete reply under ``grammar``."""
    matcher = compiler.matcher(grammar)
    tokenizer = build_tokenizer("qwen2_5_vl")
    tokens = [*tokenizer.encode(text), tokenizer.convert_tokens_to_ids("<|im_end|>")]
    return all(matcher.accept(t) for t in tokens) and matcher.done()


@pytest.mark.parametrize(("text", "ok"), [
    ('I will answer.<tool_call>{"name": "select_masks_and_return", "arguments": {"mask_ids": [4, 1]}}</tool_call>',
     True),
    ('<tool_call>\n{"name": "segment_phrase", "arguments": {"text_prompt": "red car"}}\n</tool_call>', True),
    ('<think>look</think>fine<tool_call>{"name": "report_no_mask", "arguments": {}}</tool_call>', True),
    ('thinking started in the prompt</think>\n\n<tool_call>{"name": "report_no_mask", "arguments": {}}</tool_call>',
     True),
    ('<think>a</think>b</think><tool_call>{"name": "report_no_mask", "arguments": {}}</tool_call>', False),
    ('<tool_call>{"name": "select_masks_and_return", "arguments": {"mask_ids": [2]}}</tool_call>', False),
    ('<tool_call>{"name": "select_masks_and_return", "arguments": {"mask_ids": []}}</tool_call>', False),
    ('<tool_call>{"name": "segment_phrase", "arguments": {"text_prompt": " "}}</tool_call>', False),
    ('<tool_call>{"name": "report_no_mask", "arguments": {}}</tool_call><tool_call>{"name": "report_no_mask", '
     '"arguments": {}}</tool_call>', False),
    ('<tool_call>{"name": "paint", "arguments": {}}</tool_call>', False),
    ("no call at all", False),
])
def test_grammar_accepts_exactly_valid_replies(compiler, text, ok):
    assert accepts(compiler, CallGrammar(call_schema(SPECS, IDS)), text) is ok


def test_prose_budget_forces_the_call_to_start(compiler):
    """Past the budget only tokens that can start a tag stay allowed; within it, prose goes on."""
    tokenizer = build_tokenizer("qwen2_5_vl")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    processor = ConstrainedLogits(compiler, [compiler.matcher(CallGrammar(call_schema(SPECS, IDS)))], 1, [end], [3])
    prose = tokenizer.encode("the cup is here")
    assert len(prose) > 3
    allowed_counts = []
    for k in range(len(prose) + 1):
        ids = torch.tensor([[0, *prose[:k]]])
        scores = processor(ids, torch.zeros(1, compiler.vocab_size))
        allowed = torch.isfinite(scores[0]).nonzero().flatten().tolist()
        allowed_counts.append(len(allowed))
        if k >= 3:
            assert allowed and all("<" in compiler.token_texts[t] for t in allowed)
    assert allowed_counts[0] > allowed_counts[3]
    call = tokenizer.encode('<tool_call>{"name": "report_no_mask", "arguments": {}}</tool_call>')
    for k in range(len(call)):  # the tag and the call that follows stay possible
        ids = torch.tensor([[0, *prose[:3], *call[:k]]])
        assert torch.isfinite(processor(ids, torch.zeros(1, compiler.vocab_size))[0, call[k]])


def test_call_choices_follow_the_state():
    fresh = call_choices(State(), AgentSettings(), SPECS)
    assert fresh.tools == ("segment_phrase", "report_no_mask") and fresh.values["mask_ids"] == ()
    masks = [{"id": 1, "status": "candidate"}, {"id": 2, "status": "rejected"}, {"id": 3, "status": "candidate"}]
    state = State(masks=masks, phrases_tried=["cup", "mug"])
    later = call_choices(state, AgentSettings(), SPECS)
    assert set(later.tools) == {s.name for s in SPECS} and later.values["mask_ids"] == (1, 3)
    spent = call_choices(state, AgentSettings(max_phrases=2), SPECS)
    assert "segment_phrase" not in spent.tools and "select_masks_and_return" in spent.tools


# ------------------------------------------------------------------ random weights, in process


async def _replies(config: LLMConfig, n: int) -> list:
    image = random_image(np.random.default_rng(5))
    async with LLMClient(config) as llm:
        messages = [{"role": "system", "content": "You segment images."},
                    {"role": "user", "content": [{"type": "text", "text": "the cat"}, llm.image_part(image)]}]
        return [await llm.chat(messages, SPECS, choices=IDS) for _ in range(n)]


def test_random_weights_always_make_valid_calls_when_constrained(tiny_llm):
    replies = asyncio.run(_replies(local(tiny_llm, temperature=1.0), 10))
    for reply in replies:
        assert reply.tool_error is None and reply.tool_call is not None, reply.content
        assert reply.finish_reason == "stop"
        call = reply.tool_call
        if call.name == "select_masks_and_return":
            assert set(call.arguments["mask_ids"]) <= {1, 4}
    off = asyncio.run(_replies(local(tiny_llm, temperature=1.0, constrained="off"), 3))
    assert all(r.tool_call is None or r.tool_error is not None for r in off)  # as today: no valid call


AGENT = AgentSettings(max_steps=4, score_threshold=0.0, max_retries=2)


def test_agent_runs_end_properly_with_constraints(engine, tiny_llm):
    image = random_image(np.random.default_rng(11))
    for settings in (AGENT, AgentSettings(max_steps=3, score_threshold=0.0, verification=False)):
        answer = run_agent_sync(engine, local(tiny_llm), image, "the red block", settings=settings)
        assert answer.status in ("answered", "no_mask", "budget_exhausted"), (answer.status, answer.cause)
        model_steps = [r for r in answer.trace if r["node"] == "call_model"]
        assert model_steps and all(r["outcome"] in ("call", "limit") for r in model_steps)
        assert answer.usage.completion_tokens > 0


def test_agent_without_constraints_fails_on_invalid_replies(engine, tiny_llm):
    image = random_image(np.random.default_rng(11))
    answer = run_agent_sync(engine, local(tiny_llm, constrained="off", max_tokens=40), image, "the red block",
                            settings=AGENT)
    assert answer.status == "failed" and answer.cause == "invalid_replies"


# ------------------------------------------------------------------ grammars sent to a server


def _text_call() -> Reply:
    return Reply.text('<tool_call>{"name": "report_no_mask", "arguments": {}}</tool_call>')


def _chat(config: LLMConfig, n: int = 1) -> list:
    async def main():
        async with LLMClient(config) as llm:
            return [await llm.chat([{"role": "user", "content": "hi"}], SPECS, choices=IDS) for _ in range(n)]

    return asyncio.run(main())


def test_grammar_goes_to_a_server_when_asked(scripted_llm):
    scripted_llm.add(_text_call())
    reply = _chat(LLMConfig(base_url=scripted_llm.base_url, model=scripted_llm.model, constrained="on"))[0]
    assert reply.tool_call.name == "report_no_mask"
    body = scripted_llm.requests[0]
    grammar = body["structured_outputs"]["grammar"]
    assert "<tool_call>" in grammar and "select_masks_and_return" in grammar
    assert "guided_grammar" not in body  # removed in vLLM 0.12; a 0.33 server warns it is ignored


def test_auto_mode_sends_no_grammar_to_a_server_that_is_not_vllm(scripted_llm):
    scripted_llm.add(_text_call())
    _chat(LLMConfig(base_url=scripted_llm.base_url, model=scripted_llm.model))
    assert "structured_outputs" not in scripted_llm.requests[0]


def test_no_grammar_is_built_once_the_server_is_known_not_to_take_it(scripted_llm, monkeypatch):
    import agent.llm

    built = []
    monkeypatch.setattr(agent.llm, "call_grammar", lambda *a: built.append(a) or call_grammar(*a))
    scripted_llm.add(_text_call(), _text_call(), _text_call())
    replies = _chat(LLMConfig(base_url=scripted_llm.base_url, model=scripted_llm.model), 3)
    assert [r.tool_call.name for r in replies] == ["report_no_mask"] * 3
    assert len(built) == 1  # the first call, before the server was asked what it is; never again
    assert not any("structured_outputs" in body for body in scripted_llm.requests)


def test_a_server_refusing_the_grammar_is_asked_again_without_it():
    refusal = Reply.error(400, "Unrecognized request argument supplied: structured_outputs")
    with ScriptedLLM([refusal, _text_call(), _text_call()]) as server:
        config = LLMConfig(base_url=server.base_url, model=server.model, constrained="on", max_retries=0)
        replies = _chat(config, 2)
        assert [r.tool_call.name for r in replies] == ["report_no_mask"] * 2
        sent = ["structured_outputs" in body for body in server.requests]
    assert sent == [True, False, False]


def test_native_protocol_and_constraints_off_send_no_grammar(scripted_llm):
    scripted_llm.add(Reply.call("report_no_mask"), _text_call())
    _chat(LLMConfig(base_url=scripted_llm.base_url, model=scripted_llm.model, constrained="on",
                    tool_protocol="native"))
    _chat(LLMConfig(base_url=scripted_llm.base_url, model=scripted_llm.model, constrained="off"))
    assert not any("structured_outputs" in body for body in scripted_llm.requests)
    assert json.dumps(scripted_llm.requests[0]).count("report_no_mask") >= 1
