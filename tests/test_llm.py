"""Tests of agent.llm and agent.tool_protocol against a real scripted HTTP server."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel, Field

from agent import tool_protocol as tp
from agent.image_urls import image_to_data_url
from agent.llm import LLMClient, LLMConfig, Usage
from agent.testing import Reply, ScriptedLLM, image_urls, message_texts
from sam3_core.errors import ImageError, ModelRetry, RunFailed, UsageError


class SegmentArgs(BaseModel):
    """Arguments of segment_phrase."""

    text_prompt: str = Field(description="a short noun phrase")
    max_masks: int = 10


TOOLS = [tp.ToolSpec("segment_phrase", "Segment every instance of a phrase.", SegmentArgs)]


def tagged(arguments: str, *, close: bool = True, fence: bool = False) -> str:
    """A text-protocol call of segment_phrase with the given raw arguments text."""
    body = f'{{"name": "segment_phrase", "arguments": {arguments}}}'
    if fence:
        body = f"\n```json\n{body}\n```\n"
    return f"<tool_call>{body}" + ("</tool_call>" if close else "")


def fast_config(server: ScriptedLLM, **kw: object) -> LLMConfig:
    """A config with tiny backoff and timeout so retry tests take milliseconds."""
    base = {"base_url": server.base_url, "model": server.model, "api_key": "test-key", "timeout_s": 2.0,
            "max_retries": 3, "backoff_initial_s": 0.01, "backoff_max_s": 0.02}
    return LLMConfig(**{**base, **kw})


def chat(config: LLMConfig, messages: list[dict] | None = None, tools=TOOLS):
    """Run one chat call on a fresh client; return (reply, client usage)."""

    async def go():
        async with LLMClient(config) as llm:
            reply = await llm.chat(messages or [{"role": "user", "content": "segment the cat"}], tools)
            return reply, llm.usage

    return asyncio.run(go())


# --------------------------------------------------------------------------- protocols over HTTP


def test_native_tool_call_parsed():
    with ScriptedLLM([Reply.call("segment_phrase", _id="call_7", text_prompt="red car")]) as server:
        reply, _ = chat(fast_config(server, tool_protocol="native"))
    assert reply.tool_call is not None and reply.tool_error is None
    assert (reply.tool_call.name, reply.tool_call.id) == ("segment_phrase", "call_7")
    assert reply.tool_call.arguments == {"text_prompt": "red car"}
    assert reply.tool_call.parsed == SegmentArgs(text_prompt="red car")
    sent = server.requests[0]
    assert sent["tools"][0]["function"]["name"] == "segment_phrase"
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["text_prompt"]
    assert reply.message["tool_calls"][0]["id"] == "call_7"
    assert json.loads(reply.message["tool_calls"][0]["function"]["arguments"]) == {"text_prompt": "red car"}


def test_text_protocol_call_parsed():
    content = "I will look for it.\n" + tagged('{"text_prompt": "cat"}')
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "cat?"}]
    with ScriptedLLM([content]) as server:
        reply, _ = chat(fast_config(server, tool_protocol="text"), history)
    assert reply.tool_call.name == "segment_phrase" and reply.tool_call.arguments == {"text_prompt": "cat"}
    assert reply.text == "I will look for it."
    assert reply.message == {"role": "assistant", "content": content}
    sent = server.requests[0]
    assert "tools" not in sent
    system = message_texts(sent, "system")[0]
    assert system.startswith("Be brief.") and "## segment_phrase" in system and "<tool_call>" in system


def test_native_mode_falls_back_to_call_written_in_text():
    content = tagged('{"text_prompt": "dog",}')
    with ScriptedLLM([content]) as server:
        reply, _ = chat(fast_config(server, tool_protocol="native"))
    assert reply.tool_call.arguments == {"text_prompt": "dog"}
    assert reply.message["tool_calls"][0]["function"]["name"] == "segment_phrase"


def test_invalid_arguments_reported_as_tool_error():
    bad_native = Reply(tool_calls=[{"name": "segment_phrase", "arguments": '{"text_prompt": '}])
    with ScriptedLLM([Reply.call("segment_phrase", max_masks="many"), bad_native]) as server:
        config = fast_config(server, tool_protocol="native")
        reply, _ = chat(config)
        truncated, _ = chat(config)
    assert isinstance(reply.tool_error, ModelRetry)
    assert "text_prompt" in str(reply.tool_error) and "max_masks" in str(reply.tool_error)
    assert isinstance(truncated.tool_error, ModelRetry)
    assert json.loads(truncated.message["tool_calls"][0]["function"]["arguments"]) == {}


def test_model_discovered_from_endpoint():
    with ScriptedLLM(["hello"], model="served-model") as server:
        reply, _ = chat(fast_config(server, model="", extra_body={"top_k": 20}), tools=None)
    assert reply.text == "hello" and reply.tool_call is None
    assert server.requests[0]["model"] == "served-model" and server.requests[0]["top_k"] == 20
    assert server.request_headers[0]["authorization"] == "Bearer test-key"


# --------------------------------------------------------------------------- retries and failures


def test_retries_on_503_then_succeeds():
    with ScriptedLLM([Reply.error(503), Reply.error(502), "ok"]) as server:
        reply, usage = chat(fast_config(server), tools=None)
    assert reply.text == "ok"
    assert len(server.requests) == 3
    assert usage.retries == 2 and usage.calls == 1 and usage.failures == 0


def test_timeout_then_success():
    with ScriptedLLM([Reply.text("slow", delay_s=2.0), "fast"]) as server:
        reply, usage = chat(fast_config(server, timeout_s=0.3), tools=None)
    # "fast" can only come from the second request: the first attempt was given up at the timeout
    assert reply.text == "fast" and usage.retries == 1
    assert len(server.requests) == 2


def test_400_fails_at_once_without_retry():
    rejection = Reply.error(400, '"auto" tool choice requires --enable-auto-tool-choice')
    with ScriptedLLM([rejection, "ok"]) as server, pytest.raises(RunFailed) as info:
        chat(fast_config(server, tool_protocol="native"))
    assert info.value.cause == "llm_rejected"
    assert len(server.requests) == 1
    assert server.base_url in str(info.value) and "--tool-call-parser" in str(info.value)


def test_gives_up_after_max_retries():
    with ScriptedLLM([Reply.error(503)] * 5) as server, pytest.raises(RunFailed) as info:
        chat(fast_config(server, max_retries=2), tools=None)
    assert info.value.cause == "llm_unavailable"
    assert len(server.requests) == 3
    assert "after 3 attempt(s)" in str(info.value) and "HTTP 503" in str(info.value)


def test_unreachable_endpoint_raises_run_failed():
    with ScriptedLLM() as server:
        url = server.base_url
    config = LLMConfig(base_url=url, model="m", max_retries=1, backoff_initial_s=0.01, timeout_s=1.0)
    with pytest.raises(RunFailed) as info:
        chat(config, tools=None)
    assert info.value.cause == "llm_unavailable" and url in str(info.value)


def test_exhausted_script_returns_500_and_is_recorded():
    with ScriptedLLM(["only one"]) as server:
        chat(fast_config(server), tools=None)
        with pytest.raises(RunFailed):
            chat(fast_config(server, max_retries=0), tools=None)
    assert server.errors and "script exhausted" in server.errors[0]


# --------------------------------------------------------------------------- usage and concurrency


def test_token_usage_summed():
    with ScriptedLLM([Reply.text("a", prompt_tokens=100, completion_tokens=7),
                      Reply.text("b", prompt_tokens=50, completion_tokens=3)]) as server:

        async def go():
            async with LLMClient(fast_config(server)) as llm:
                first = await llm.chat([{"role": "user", "content": "1"}])
                await llm.chat([{"role": "user", "content": "2"}])
                return first, llm.usage

        first, usage = asyncio.run(go())
    assert first.usage.prompt_tokens == 100
    assert usage == Usage(calls=2, prompt_tokens=150, completion_tokens=10, total_tokens=160)


def test_concurrent_calls_answered_by_content():
    def responder(body: dict) -> Reply:
        mask_id = message_texts(body, "user")[-1].split()[-1]
        return Reply.text(f"verified {mask_id}", prompt_tokens=1, completion_tokens=1)

    with ScriptedLLM(responder=responder) as server:

        async def go():
            async with LLMClient(fast_config(server, max_concurrency=4)) as llm:
                replies = await asyncio.gather(
                    *(llm.chat([{"role": "user", "content": f"check mask {i}"}]) for i in range(12))
                )
                return [r.text for r in replies], llm.usage

        texts, usage = asyncio.run(go())
    assert texts == [f"verified {i}" for i in range(12)]
    assert usage.calls == 12 and usage.total_tokens == 24


# --------------------------------------------------------------------------- images


def decode(url: str) -> Image.Image:
    header, data = url.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_image_data_url_respects_pixel_budget():
    image = np.random.default_rng(0).integers(0, 255, (600, 1000, 3), dtype=np.uint8)
    out = decode(image_to_data_url(image, max_pixels=100_000))
    assert out.format == "JPEG" and out.width * out.height <= 100_000
    assert out.width * out.height > 90_000
    assert abs(out.width / out.height - 1000 / 600) < 0.02
    small = decode(image_to_data_url(Image.fromarray(image[:50, :80]), max_pixels=100_000, fmt="png"))
    assert small.format == "PNG" and small.size == (80, 50)


def test_bad_images_rejected():
    with pytest.raises(ImageError):
        image_to_data_url(np.zeros((4, 4, 3), dtype=np.float32), 100)
    with pytest.raises(ImageError):
        image_to_data_url(np.zeros((0, 4, 3), dtype=np.uint8), 100)
    with pytest.raises(UsageError):
        image_to_data_url("cat.jpg", 100)


def test_image_sent_in_request():
    with ScriptedLLM(["seen"]) as server:

        async def go():
            async with LLMClient(fast_config(server, image_max_pixels=64 * 64)) as llm:
                part = llm.image_part(np.zeros((256, 128, 3), dtype=np.uint8))
                await llm.chat([{"role": "user", "content": [part, {"type": "text", "text": "what?"}]}])

        asyncio.run(go())
    (url,) = image_urls(server.requests[0])
    assert decode(url).size == (45, 90)


# --------------------------------------------------------------------------- text parser


def parse(content: str) -> tp.ParsedText:
    return tp.parse_text_reply(content, TOOLS)


def test_parser_code_fence_inside_tags():
    got = parse(tagged('{"text_prompt": "cup"}', fence=True))
    assert got.call.arguments == {"text_prompt": "cup"}


def test_parser_single_quotes():
    got = parse("<tool_call>{'name': 'segment_phrase', 'arguments': {'text_prompt': 'a \"big\" dog', "
                "'note': 'it\\'s'}}</tool_call>")
    assert got.call.arguments == {"text_prompt": 'a "big" dog', "note": "it's"}


def test_parser_trailing_commas_and_python_literals():
    got = parse(tagged('{"text_prompt": "x", "flag": True,},'))
    assert got.call.arguments == {"text_prompt": "x", "flag": True}


def test_parser_arguments_as_json_string():
    got = parse(tagged(json.dumps(json.dumps({"text_prompt": "tree"}))))
    assert got.call.arguments == {"text_prompt": "tree"}


def test_parser_missing_closing_brace():
    got = parse(tagged('{"text_prompt": "cat"')[: -len("}</tool_call>")] + "</tool_call>")
    assert got.call.arguments == {"text_prompt": "cat"}


def test_parser_missing_closing_tag():
    got = parse("Let me segment.\n" + tagged('{"text_prompt": "bike"}', close=False) + "\n")
    assert got.call.arguments == {"text_prompt": "bike"} and got.text == "Let me segment."


def test_parser_several_calls_takes_first():
    got = parse("\n".join(tagged(f'{{"text_prompt": "{word}"}}') for word in ("one", "two", "three")))
    assert got.call.arguments == {"text_prompt": "one"} and got.ignored_calls == 2


def test_parser_ignores_calls_inside_think_blocks():
    thought = "<think>maybe " + tagged('{"text_prompt": "no"}') + "</think>"
    got = parse(thought + tagged('{"text_prompt": "yes"}'))
    assert got.call.arguments == {"text_prompt": "yes"} and "maybe" in got.reasoning
    only_thought = parse(thought + "The answer is 3.")
    assert only_thought.call is None and only_thought.text == "The answer is 3."


def test_parser_think_opened_by_template():
    got = parse("I need the cat</think>\n" + tagged('{"text_prompt": "cat"}', close=False))
    assert got.call.arguments == {"text_prompt": "cat"} and got.reasoning == "I need the cat"


def test_parser_no_call():
    got = parse("There are three apples in the image.")
    assert got.call is None and got.ignored_calls == 0 and got.text == "There are three apples in the image."


def test_parser_call_without_tags():
    got = parse('Segmenting.\n```json\n{"name": "segment_phrase", "parameters": {"text_prompt": "kite"}}```')
    assert got.call.name == "segment_phrase" and got.call.arguments == {"text_prompt": "kite"}
    assert got.text == "Segmenting."
    answer = parse('The boxes are ```json\n{"name": "box", "arguments": [1, 2]}\n```')
    assert answer.call is None and answer.text.startswith("The boxes are")


@pytest.mark.parametrize(
    "garbage",
    [
        "<tool_call>segment the cat please</tool_call>",
        tagged('{"text_prompt": "ca', close=False),
        '<tool_call>{"arguments": {"text_prompt": "cat"}}</tool_call>',
        tagged('["cat"]'),
    ],
)
def test_parser_garbage_raises_model_retry_with_format(garbage: str):
    with pytest.raises(ModelRetry) as info:
        parse(garbage)
    message = str(info.value)
    assert "<tool_call>" in message and '"segment_phrase"' in message and "double quotes" in message


def test_validation_names_bad_field_and_unknown_tool():
    with pytest.raises(ModelRetry, match="field 'max_masks'"):
        tp.validate_call(tp.ToolCall("segment_phrase", {"text_prompt": "a", "max_masks": "x"}), TOOLS)
    with pytest.raises(ModelRetry, match="field 'text_prompt': Field required"):
        tp.validate_call(tp.ToolCall("segment_phrase", {}), TOOLS)
    with pytest.raises(ModelRetry, match=r"Unknown tool 'segment'.*segment_phrase"):
        tp.validate_call(tp.ToolCall("segment", {}), TOOLS)


def test_schema_and_result_messages():
    (schema,) = tp.to_openai_tools(TOOLS)
    params = schema["function"]["parameters"]
    assert params["properties"]["text_prompt"] == {"type": "string", "description": "a short noun phrase"}
    assert "title" not in params
    call = tp.ToolCall("segment_phrase", {"text_prompt": "x"}, id="c1")
    assert tp.tool_result_messages("3 masks", "native", call) == [
        {"role": "tool", "tool_call_id": "c1", "content": "3 masks"}]
    text_mode = tp.tool_result_messages("3 masks", "text", call)
    assert text_mode == [{"role": "user", "content": "<tool_response>\n3 masks\n</tool_response>"}]
    with pytest.raises(UsageError):
        LLMConfig(tool_protocol="xml")


@pytest.mark.parametrize("keep_alive", [False, True])
def test_scripted_server_keeps_connections_open_only_when_asked(keep_alive):
    with ScriptedLLM([Reply.text("one"), Reply.text("two")], keep_alive=keep_alive) as server:
        host, port = server.base_url.split("//")[1].split("/")[0].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        body = json.dumps({"model": server.model, "messages": [{"role": "user", "content": "hi"}]})
        answers = []
        for _ in range(2):
            connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            content = json.loads(response.read())["choices"][0]["message"]["content"]
            answers.append((content, response.will_close))  # will_close: the server ends the connection
        connection.close()
    assert answers == [("one", not keep_alive), ("two", not keep_alive)]
