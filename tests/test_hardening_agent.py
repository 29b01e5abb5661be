"""Regression tests of issue 11 (hardening), rows 4, 5 and 18 of the agent: hostile model replies, a lying endpoint,
impossible token counts. Each test is named after its row (rows 17 and 18 of evaluation: test_hardening_eval.py).

The agent runs on the tiny SAM 3 (random weights: ``score_threshold=0.2``) against the scripted LLM over
real HTTP, text tool protocol.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from typing import Any

import numpy as np
import pytest
from conftest import random_image
from PIL import Image

from agent import lenient_json
from agent.answers import AgentRunFailed
from agent.llm import LLMConfig
from agent.runner import AgentAnswer, run_agent_sync
from agent.settings import AgentSettings
from agent.testing import Reply, ScriptedLLM, completion_body, message_texts

SETTINGS = AgentSettings(score_threshold=0.2, verification=False)


def call(name: str, **arguments: Any) -> Reply:
    return Reply.text(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")


def raw_call(name: str, arguments_json: str) -> Reply:
    """A call whose arguments are written as given (numbers Python's json would not produce, huge lists)."""
    return Reply.text(f'<tool_call>{{"name": "{name}", "arguments": {arguments_json}}}</tool_call>')


def run(engine, server: ScriptedLLM, settings: AgentSettings = SETTINGS, **config: Any) -> AgentAnswer:
    llm = LLMConfig(base_url=server.base_url, model=server.model, api_key="test", timeout_s=20.0, max_retries=0,
                    tool_protocol="text", **config)
    image = random_image(np.random.default_rng(2024))
    return run_agent_sync(engine, llm, image, "the cup", settings=settings)


def failed_run(engine, server: ScriptedLLM, **kw: Any) -> AgentRunFailed:
    with pytest.raises(AgentRunFailed) as caught:
        run(engine, server, **kw)
    assert caught.value.answer.status == "failed"
    return caught.value


def last_user_text(body: dict[str, Any]) -> str:
    return message_texts(body, "user")[-1]


@pytest.fixture
def server():
    with ScriptedLLM() as srv:
        yield srv


# ------------------------------------------------------------------------------ row 4: every end is a status


def test_row4_non_json_body_is_a_status(engine, server):
    server.add(Reply(raw_body="<html>502 bad gateway, but sent as 200</html>"))
    failure = failed_run(engine, server)
    assert failure.cause == "llm_bad_response" and "not JSON" in str(failure)
    assert failure.answer.trace[-1]["outcome"] == "failed"


def test_row4_null_message_is_a_status(engine, server):
    body = completion_body(Reply.text("x"), server.model)
    body["choices"][0]["message"] = None
    server.add(Reply(raw_body=json.dumps(body)))
    failure = failed_run(engine, server)
    assert failure.cause == "llm_bad_response" and "message is null" in str(failure)


def test_row4_huge_mask_id_is_a_retry_and_never_stored(engine, server):
    server.add(call("segment_phrase", text_prompt="cup"),
               raw_call("select_masks_and_return", '{"mask_ids": [1180591620717411303424]}'),
               raw_call("segment_phrase", '{"text_prompt": "mug", "note": -1180591620717411303424}'),
               call("select_masks_and_return", mask_ids=[1]))
    answer = run(engine, server)
    assert answer.status == "answered" and answer.mask_ids == [1]
    retries = [last_user_text(body) for body in server.requests[2:4]]
    assert all("71-bit integer" in text for text in retries), retries
    stored = [r["arguments"] for r in answer.trace if r["outcome"] == "retry"]
    assert stored == [{"mask_ids": ["<71-bit integer>"]}, {"text_prompt": "mug", "note": "<71-bit integer>"}]


def test_row4_crashing_tool_is_a_status(engine, server, monkeypatch):
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine worker died")

    monkeypatch.setattr(engine, "asegment", broken)
    server.add(call("segment_phrase", text_prompt="cup"))
    failure = failed_run(engine, server)
    assert failure.cause == "tool_error" and "engine worker died" in failure.answer.error


def test_row4_cli_writes_result_and_trace_whatever_the_ending(tmp_path, tiny_checkpoint, server):
    from cli.main import main

    image = tmp_path / "img.png"
    Image.fromarray(random_image(np.random.default_rng(3), 60, 80)).save(image)
    server.add(call("segment_phrase", text_prompt="cup"), Reply(raw_body="not json at all"))
    out = tmp_path / "run"
    code = main(["segment", str(image), "the cup", "--model", tiny_checkpoint, "--llm-url", server.base_url,
                 "--llm-model", server.model, "--llm-retries", "0", "--threshold", "0.0", "--out", str(out),
                 "--no-verify"])
    assert code != 0
    result = json.loads((out / "result.json").read_text())
    trace = json.loads((out / "trace.json").read_text())
    assert result["status"] == trace["status"] == "failed" and result["cause"] == "llm_bad_response"
    assert result["image"] == str(image) and result["rles"] == []
    assert [s["node"] for s in trace["steps"]] == ["call_model", "run_tool", "call_model"]


def test_row4_cli_video_writes_result_and_trace_whatever_the_ending(tmp_path, tiny_checkpoint, server):
    from cli.main import main

    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        Image.fromarray(random_image(np.random.default_rng(index), 60, 80)).save(frames / f"{index}.png")
    body = completion_body(Reply.text("x"), server.model)
    body["choices"][0]["message"] = None
    server.add(Reply(raw_body=json.dumps(body)))
    out = tmp_path / "run"
    code = main(["segment-video", str(frames), "the disc", "--model", tiny_checkpoint, "--llm-url", server.base_url,
                 "--llm-model", server.model, "--llm-retries", "0", "--out", str(out), "--no-progress"])
    assert code != 0
    result = json.loads((out / "result.json").read_text())
    trace = json.loads((out / "trace.json").read_text())
    assert result["status"] == trace["status"] == "failed" and result["cause"] == "llm_bad_response"
    assert result["masklet_ids"] == [] and trace["steps"][-1]["outcome"] == "failed"


# ------------------------------------------------------------------------------ row 5: bounded model output


def test_row5_body_over_the_limit_is_not_read(engine, server):
    ids = ", ".join(["1"] * 2_000_000)  # the 2 M ids of the issue, about 6 MB
    server.add(Reply.text(f'<tool_call>{{"name": "select_masks_and_return", "arguments": {{"mask_ids": [{ids}]}}}}'
                          "</tool_call>"))
    failure = failed_run(engine, server)
    assert failure.cause == "llm_bad_response" and "more than the limit of 1048576" in str(failure)


def test_row5_streamed_body_over_the_limit_is_cut_while_reading():
    """A body without a Content-Length (chunked) is read up to the limit and no further."""
    from agent import reply_limits

    http = reply_limits.httpx
    sent = []

    async def endless():
        for _ in range(1000):
            sent.append(4096)
            yield b"x" * 4096

    def handler(request: Any) -> Any:
        return http.Response(200, content=endless())

    async def fetch() -> None:
        transport = reply_limits.BoundedTransport(64 * 1024, inner=http.MockTransport(handler))
        async with http.AsyncClient(transport=transport) as client:
            await client.get("http://llm.invalid/v1/chat/completions")

    with pytest.raises(reply_limits.UnreadableResponse, match="exceeds 65536 bytes"):
        asyncio.run(fetch())
    assert sum(sent) <= 64 * 1024 + 4096  # stopped at the limit, not after the 4 MB on offer


def test_row5_compressed_body_is_refused():
    from agent import reply_limits

    http = reply_limits.httpx

    def handler(request: Any) -> Any:
        assert request.headers["accept-encoding"] == "identity"
        return http.Response(200, content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"})

    async def fetch() -> None:
        transport = reply_limits.BoundedTransport(64 * 1024, inner=http.MockTransport(handler))
        async with http.AsyncClient(transport=transport) as client:
            await client.get("http://llm.invalid/v1/chat/completions")

    with pytest.raises(reply_limits.UnreadableResponse, match="compressed"):
        asyncio.run(fetch())


def test_row5_reply_over_max_reply_bytes_is_a_retry(engine, server):
    server.add(Reply.text("Let me think. " * 8000 + '<tool_call>{"name": "report_no_mask", "arguments": {}}'
                          "</tool_call>"),
               call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[1]))
    answer = run(engine, server)
    assert answer.status == "answered" and answer.mask_ids == [1]
    retry = server.requests[1]
    assert "more than the limit of 65536 bytes" in last_user_text(retry)
    kept = message_texts(retry, "assistant")[-1]
    assert kept.endswith("[... cut]") and len(kept) < 2100  # 112 KB reply: only its start stays in the history
    assert len(json.dumps(retry)) < 60_000


def test_row5_max_reply_bytes_is_a_setting(engine, server):
    server.add(Reply.text("x" * 3000), call("report_no_mask"))
    answer = run(engine, server, max_reply_bytes=2048)
    assert answer.status == "no_mask"
    assert "more than the limit of 2048 bytes" in last_user_text(server.requests[1])


def test_row5_many_ids_are_refused_with_a_short_message(engine, server):
    many = json.dumps({"mask_ids": list(range(1, 5001))})
    server.add(call("segment_phrase", text_prompt="cup"), raw_call("select_masks_and_return", many),
               call("select_masks_and_return", mask_ids=[1, 2, 3]), call("select_masks_and_return", mask_ids=[1]))
    answer = run(engine, server)
    assert answer.status == "answered"
    too_many, more_than_masks = last_user_text(server.requests[2]), last_user_text(server.requests[3])
    assert "5000 entries; at most 1000" in too_many and len(too_many) < 2000
    assert "Unknown mask id(s) [2, 3]" in more_than_masks
    assert "3 different mask ids but there are only 1 candidate" in more_than_masks


def test_row5_replies_are_parsed_off_the_event_loop(engine, server, monkeypatch):
    from agent import llm as llm_module

    threads: list[str] = []
    original = llm_module._build_reply

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(llm_module, "_build_reply", recording)
    server.add(call("report_no_mask"))
    assert run(engine, server).status == "no_mask"
    assert threads and threading.main_thread().name not in threads


class _CountingStr(str):
    """A string that counts the characters of every slice taken of it (a copy made by the parser)."""

    copied = 0

    def __getitem__(self, key: Any) -> str:
        part = super().__getitem__(key)
        if isinstance(key, slice):
            type(self).copied += len(part)
        return part


def test_row5_json_repair_is_linear():
    text = "{'mask_ids': [" + "1, " * 2000 + "], key: True,}"
    _CountingStr.copied = 0
    repaired = lenient_json._repair_json(_CountingStr(text))
    assert json.loads(repaired) == {"mask_ids": [1] * 2000, "key": True}
    assert _CountingStr.copied <= 2 * len(text)  # the old repair copied the rest of the text at every comma


@pytest.mark.parametrize("text", [
    "a<think>x</think>b<THINK>y</think>c", "<think>open only", "<think>a<think>b</think>c</think>", "",
    "x</think>y", "<think></think>" * 3 + "<think>",
])
def test_row5_linear_think_blocks_match_the_regex(text):
    pattern = re.compile(r"<think>(.*?)</think>", re.IGNORECASE | re.DOTALL)
    opening, closing = re.compile("<think>", re.I), re.compile("</think>", re.I)
    assert lenient_json.tagged_blocks(text, opening, closing) == (pattern.findall(text), pattern.sub("", text))


@pytest.mark.parametrize("text", [
    'a ```json\n{"name": "x"}\n``` b ```{"y": 1}```', "```{", "```{}``` ```{" + "}" * 3 + "```", "no fence",
    '```json {"a": "```"} ```',
])
def test_row5_linear_fenced_objects_match_the_regex(text):
    pattern = re.compile(r"```[a-zA-Z]*\s*(\{.*?\})\s*```", re.DOTALL)
    assert lenient_json.fenced_objects(text) == [(m.group(0), m.group(1)) for m in pattern.finditer(text)]


def test_row5_pathological_replies_stay_cheap():
    """Many ``<think>`` or fence openings (quadratic for the old regexes) are read with a bounded amount of work."""
    from agent import tool_protocol as tp

    calls = 0
    real_match = lenient_json._FENCED_OBJECT.match

    class Counting:
        def match(self, *args: Any) -> Any:
            nonlocal calls
            calls += 1
            return real_match(*args)

    lenient_json._FENCED_OBJECT, saved = Counting(), lenient_json._FENCED_OBJECT  # type: ignore[assignment]
    try:
        parsed = tp.parse_text_reply("```{" * 16_000 + "<think>" * 9_000)
    finally:
        lenient_json._FENCED_OBJECT = saved
    assert parsed.call is None and calls <= lenient_json.MAX_FENCES


# ------------------------------------------------------------------------------ row 18: untrusted inputs


@pytest.mark.parametrize("usage", [{"prompt_tokens": -1_000_000}, {"completion_tokens": 10**12},
                                   {"prompt_tokens": "many"}])
def test_row18_impossible_token_counts_are_refused(engine, server, usage):
    body = completion_body(call("report_no_mask"), server.model)
    body["usage"].update(usage)
    server.add(Reply(raw_body=json.dumps(body)))
    failure = failed_run(engine, server)
    assert failure.cause == "llm_bad_response" and "impossible token count" in str(failure)


def test_row18_total_tokens_cannot_hide_the_sum(engine, server):
    body = completion_body(call("report_no_mask"), server.model)
    body["usage"] = {"prompt_tokens": 500, "completion_tokens": 20, "total_tokens": 1}
    server.add(Reply(raw_body=json.dumps(body)))
    answer = run(engine, server, settings=AgentSettings(score_threshold=0.2, verification=False, max_tokens=100))
    assert answer.usage.total_tokens == 520 and answer.timings["tokens"] == 520
