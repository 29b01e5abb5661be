"""Limits (steps, wall time, tokens) with the best answer so far, model mistakes, LLM failures, and the trace.

Runs the whole graph over real HTTP against the scripted server and the tiny SAM 3 engine, like
``test_agent.py`` (whose helpers it uses).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re

import numpy as np
import pytest
from conftest import random_image
from langgraph.checkpoint.memory import InMemorySaver
from test_agent import AGENT_SEED, all_text, call, config, run

from agent.limits import best_answer
from agent.llm import LLMConfig
from agent.runner import AgentRunFailed, run_agent_sync
from agent.settings import AgentSettings
from agent.state import MaskRecord, State, new_query
from agent.testing import Reply, ScriptedLLM
from sam3_core.errors import RunFailed, UsageError
from sam3_core.postprocess import masks_to_rle

ALL_MASKS = AgentSettings(score_threshold=0.2, iom_threshold=1.0)  # "cup" gives 8 masks
RECORD_KEYS = {"index", "step", "node", "tool", "arguments", "outcome", "detail", "start_s", "total_s", "model_s",
               "sam_s", "verify_s", "overhead_s", "model_calls", "tokens", "prompt_tokens", "completion_tokens"}
TOL = 1e-4


@pytest.fixture
def server():
    with ScriptedLLM() as srv:
        yield srv
    assert not srv.errors, srv.errors


def delayed(reply: Reply, seconds: float) -> Reply:
    return dataclasses.replace(reply, delay_s=seconds)


def verdicts(accept: set[int] | None = None, delay_s: float = 0.0, status: int = 200):
    """A responder answering verification requests (accept the ids in ``accept``, all when None)."""

    def respond(body: dict) -> Reply | None:
        found = re.search(r"with only mask (\d+) highlighted", all_text(body))
        if found is None:
            return None
        if status != 200:
            return Reply.error(status, "verifier down")
        ok = accept is None or int(found.group(1)) in accept
        return Reply.text("Accept" if ok else "Reject", delay_s=delay_s)

    return respond


def check_trace(answer, wall_tolerance: float = TOL) -> None:
    """Every record complete and self-consistent; the totals add up and fit in the wall time."""
    trace, timings = answer.trace, answer.timings
    assert trace and [r["index"] for r in trace] == list(range(len(trace)))
    for record in trace:
        assert set(record) == RECORD_KEYS
        parts = record["model_s"] + record["sam_s"] + record["overhead_s"]
        assert parts == pytest.approx(record["total_s"], abs=TOL) or record["overhead_s"] == 0.0
        assert record["verify_s"] <= record["model_s"] + TOL
    assert sum(r["total_s"] for r in trace) <= timings["wall_s"] + wall_tolerance
    assert timings["model_s"] + timings["sam_s"] + timings["overhead_s"] == pytest.approx(timings["wall_s"], abs=TOL)
    for key in ("model_s", "sam_s", "verify_s"):
        assert timings[key] == pytest.approx(sum(r[key] for r in trace), abs=TOL)
    for key in ("model_calls", "tokens", "prompt_tokens", "completion_tokens"):
        assert timings[key] == sum(r[key] for r in trace)
    assert timings["records"] == len(trace) and timings["steps"] == answer.steps
    json.dumps(answer.trace_json())


# ----------------------------------------------------------------------------------------- the trace


def test_trace_records_every_step_with_timings(engine, server):
    server.responder = verdicts(accept={1, 2}, delay_s=0.2)
    server.add(delayed(call("segment_phrase", text_prompt="cup"), 0.2), call("examine_each_mask"),
               call("select_masks_and_return", mask_ids=[1, 2]))
    answer = run(engine, server, settings=ALL_MASKS)
    assert answer.status == "answered" and answer.mask_ids == [1, 2]
    check_trace(answer)
    trace = answer.trace
    assert [(r["node"], r["tool"], r["outcome"]) for r in trace] == [
        ("call_model", "segment_phrase", "call"), ("run_tool", "segment_phrase", "ok"),
        ("call_model", "examine_each_mask", "call"), ("verify_masks", "examine_each_mask", "ok"),
        ("call_model", "select_masks_and_return", "call"), ("run_tool", "select_masks_and_return", "final")]
    assert trace[0]["arguments"] == {"text_prompt": "cup"} and trace[0]["model_s"] >= 0.2
    assert trace[1]["sam_s"] > 0 and trace[1]["model_calls"] == 0 and trace[1]["model_s"] == 0
    verify = trace[3]
    assert verify["model_calls"] == 8 and verify["tokens"] == 8 * 15 and verify["verify_s"] >= 0.2
    assert verify["verify_s"] < 0.2 * 8 / 2  # concurrent, not one after another
    timings = answer.timings
    assert timings["model_calls"] == answer.usage.calls == 11 and timings["tokens"] == answer.usage.total_tokens
    assert timings["model_s"] >= 0.4 and timings["verify_s"] == pytest.approx(verify["verify_s"], abs=TOL)
    result = answer.to_json()
    assert result["timings"] == timings and "steps" in answer.trace_json()
    assert answer.trace_json()["steps"] == trace and answer.trace_json()["status"] == "answered"


# ----------------------------------------------------------------------------------------- limits


def test_max_seconds_abandons_a_slow_call_and_returns_the_best_answer(engine, server):
    server.add(call("segment_phrase", text_prompt="cup"), delayed(call("segment_phrase", text_prompt="woman"), 5))
    answer = run(engine, server, settings=AgentSettings(score_threshold=0.2, max_seconds=1.0))
    assert answer.status == "budget_exhausted" and answer.cause == "max_seconds" and not answer.ok
    assert "max_seconds=1" in answer.error and "best answer so far: masks [1]" in answer.error
    assert answer.mask_ids == [1] and answer.masks.shape == (1, 90, 120) and answer.phrases == ["cup"]
    assert 1.0 <= answer.timings["wall_s"] < 3.0
    last = answer.trace[-1]
    assert (last["node"], last["outcome"], last["model_calls"]) == ("call_model", "limit", 0)
    assert last["model_s"] > 0.5
    check_trace(answer)


def test_max_tokens_counts_verification_and_prefers_accepted_masks(engine, server):
    server.responder = verdicts(accept={1, 3, 5, 7})
    server.add(call("segment_phrase", text_prompt="cup"), call("examine_each_mask"))
    settings = dataclasses.replace(ALL_MASKS, max_tokens=100)
    answer = run(engine, server, settings=settings)
    assert len(server.requests) == 10  # 2 main-loop calls + 8 questions = 150 tokens; no third call
    assert answer.status == "budget_exhausted" and answer.cause == "max_tokens"
    assert "150 LLM tokens (max_tokens=100)" in answer.error and "accepted by examine_each_mask" in answer.error
    assert answer.mask_ids == [1, 3, 5, 7] and answer.timings["tokens"] == answer.usage.total_tokens == 150
    assert answer.trace[-1]["outcome"] == "limit"
    check_trace(answer)


def test_no_candidate_means_an_empty_best_answer(engine, server):
    server.add("Let me think about it.")
    answer = run(engine, server, settings=AgentSettings(score_threshold=0.2, max_steps=1))
    assert answer.status == "budget_exhausted" and answer.mask_ids == [] and answer.masks.shape == (0, 90, 120)
    assert answer.error.endswith("best answer so far: no candidate masks")


def _mask_record(mask_id: int, phrase: str, score: float, status: str = "candidate") -> MaskRecord:
    mask = np.zeros((4, 4), dtype=bool)
    mask[mask_id % 4, :] = True
    return MaskRecord(id=mask_id, phrase=phrase, score=score, box=[0, 0, 4, 1], area=4,
                      rle=masks_to_rle(mask[None])[0], status=status, verified=False)


def test_best_answer_rule():
    masks = [_mask_record(1, "cup", 0.9), _mask_record(2, "mug", 0.5), _mask_record(3, "mug", 0.7),
             _mask_record(4, "mug", 0.95, "rejected"), _mask_record(5, "glass", 0.6)]
    state = State(**{**new_query("q", "k"), "masks": masks, "phrases_tried": ["Mug", "glass"]})
    # mask 1 comes from an earlier query's phrase and mask 4 was rejected: the best is 3
    assert best_answer(state) == ([3], "the highest-scoring candidate")
    accepted = dataclasses.replace(state, accepted_ids=[5, 2, 4])
    assert best_answer(accepted) == ([5, 2], "accepted by examine_each_mask")
    assert best_answer(dataclasses.replace(state, phrases_tried=[])) == ([], "no candidate masks")


def test_limit_settings_are_checked():
    for bad in ({"max_seconds": 0}, {"max_seconds": -1.0}, {"max_tokens": 0}):
        with pytest.raises(UsageError):
            AgentSettings(**bad)


# ----------------------------------------------------------------------------------------- model mistakes


def test_every_model_mistake_gets_a_corrective_message(engine, server):
    bad_json = Reply(tool_calls=[{"name": "select_masks_and_return", "arguments": '{"mask_ids": [1'}])
    server.add(call("examine_each_mask", "native"), call("draw_mask", "native", color="red"),
               call("segment_phrase", "native", phrase="cup"), call("segment_phrase", "native", text_prompt="cup"),
               call("segment_phrase", "native", text_prompt="Cup"), bad_json,
               call("select_masks_and_return", "native", mask_ids=[7]),
               call("select_masks_and_return", "native", mask_ids=[1]))
    answer = run(engine, server, protocol="native", settings=AgentSettings(score_threshold=0.2, max_retries=3))
    assert answer.status == "answered" and answer.mask_ids == [1] and answer.steps == 8
    expected = {1: "There are no candidate masks to examine. Call segment_phrase first.",
                2: "Unknown tool 'draw_mask'", 3: "Invalid arguments for tool 'segment_phrase'",
                5: 'You already tried "Cup"', 6: "are not a JSON object",
                7: "Unknown mask id(s) [7]. Valid ids are [1]."}
    for index, message in expected.items():
        assert message in all_text(server.requests[index]), index
    outcomes = [(r["node"], r["outcome"]) for r in answer.trace]
    # examine before any mask, the repeated phrase and the unknown id are refused by the tools ...
    assert outcomes.count(("run_tool", "retry")) + outcomes.count(("verify_masks", "retry")) == 3
    # ... the unknown tool, the wrong argument and the unreadable arguments already when the reply is read
    assert outcomes.count(("call_model", "retry")) == 3
    repeated = [r for r in answer.trace if r["node"] == "run_tool" and r["arguments"] == {"text_prompt": "Cup"}]
    assert repeated[0]["outcome"] == "retry" and repeated[0]["sam_s"] == 0.0  # refused before SAM 3 ran
    check_trace(answer)


def test_a_phrase_that_finds_nothing_gets_a_hint_not_an_error(engine, server):
    server.add(call("segment_phrase", text_prompt="giraffe"), call("segment_phrase", text_prompt="animal"),
               call("report_no_mask"))
    answer = run(engine, server, query="the giraffe", settings=AgentSettings(score_threshold=0.99, max_retries=0))
    assert answer.status == "no_mask" and answer.phrases_tried == ["giraffe", "animal"]
    hint = all_text(server.requests[1])
    assert '`segment_phrase("giraffe")` found no new masks' in hint and "name it differently" in hint
    tools = [r for r in answer.trace if r["node"] == "run_tool"]
    assert [r["outcome"] for r in tools] == ["ok", "ok", "final"] and tools[0]["sam_s"] > 0


# ----------------------------------------------------------------------------------------- LLM failures


def _llm(server: ScriptedLLM, **overrides) -> LLMConfig:
    return dataclasses.replace(config(server), backoff_initial_s=0.01, backoff_max_s=0.01, **overrides)


def test_server_errors_after_retries_end_the_run_with_its_trace(engine, server):
    saver = InMemorySaver()
    server.add(call("segment_phrase", text_prompt="cup"), Reply.error(500), Reply.error(503))
    image = random_image(np.random.default_rng(AGENT_SEED))
    with pytest.raises(AgentRunFailed) as info:
        run_agent_sync(engine, _llm(server, max_retries=1), image, "the cup", settings=AgentSettings(
            score_threshold=0.2), checkpointer=saver, thread_id="t")
    failure = info.value
    assert isinstance(failure, RunFailed) and failure.cause == "llm_unavailable"
    assert "after 2 attempt(s)" in str(failure)
    answer = failure.answer
    assert answer.status == "failed" and answer.cause == "llm_unavailable" and answer.mask_ids == []
    assert answer.error == str(failure) and failure.trace == answer.trace and failure.timings == answer.timings
    assert [(r["node"], r["outcome"]) for r in failure.trace] == [
        ("call_model", "call"), ("run_tool", "ok"), ("call_model", "failed")]
    assert "HTTP 503" in failure.trace[-1]["detail"] and failure.trace[-1]["model_s"] > 0
    check_trace(answer)
    saved = asyncio.run(saver.aget_tuple({"configurable": {"thread_id": "t"}})).checkpoint["channel_values"]
    assert saved["status"] == "failed" and len(saved["trace"]) == 3 and saved["timings"] == failure.timings


def test_a_timeout_ends_the_run_with_its_trace(engine, server):
    server.add(delayed(call("segment_phrase", text_prompt="cup"), 3))
    with pytest.raises(AgentRunFailed) as info:
        run_agent_sync(engine, _llm(server, timeout_s=0.3), random_image(np.random.default_rng(AGENT_SEED)),
                       "the cup", settings=AgentSettings(score_threshold=0.2))
    assert info.value.cause == "llm_timeout" and "no response within 0.3s" in str(info.value)
    (record,) = info.value.trace
    assert record["outcome"] == "failed" and record["model_s"] >= 0.3 and record["model_calls"] == 0


def test_a_verification_failure_ends_the_run_with_its_trace(engine, server):
    server.responder = verdicts(status=500)
    server.add(call("segment_phrase", text_prompt="cup"), call("examine_each_mask"))
    with pytest.raises(AgentRunFailed) as info:
        run(engine, server, settings=ALL_MASKS)
    assert info.value.cause == "llm_unavailable"
    last = info.value.trace[-1]
    assert (last["node"], last["tool"], last["outcome"]) == ("verify_masks", "examine_each_mask", "failed")
    check_trace(info.value.answer)
