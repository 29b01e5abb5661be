"""The endpoint pool (``--llm URL --llm URL ...``): per-endpoint limits, health, failover; and ``--llm`` specs."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from agent.backends.pool import PoolBackend
from agent.backends.spec import parse_spec, parse_specs
from agent.llm import LLMClient, LLMConfig
from agent.testing import Reply, ScriptedLLM
from sam3_core.errors import RunFailed, UsageError

MESSAGES = [{"role": "user", "content": "hello"}]


def answering(delay_s: float = 0.0, counter: dict[str, Any] | None = None):
    """A responder that answers every request (after ``delay_s``), tracking the most requests in flight."""
    lock = threading.Lock()

    def respond(body: dict[str, Any]) -> Reply:
        if counter is not None:
            with lock:
                counter["now"] += 1
                counter["max"] = max(counter["max"], counter["now"])
        time.sleep(delay_s)
        if counter is not None:
            with lock:
                counter["now"] -= 1
        return Reply.text("ok")

    return respond


def pool_config(*urls: str, **kw: Any) -> LLMConfig:
    kw = {"model": "scripted-model", "timeout_s": 2.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.2, **kw}
    return LLMConfig(base_url=urls[0], pool=tuple(urls[1:]), **kw)


async def ask_many(client: LLMClient, n: int) -> list[str]:
    replies = await asyncio.gather(*(client.chat(MESSAGES) for _ in range(n)))
    return [r.text for r in replies]


def served(client: LLMClient) -> list[int]:
    backend = client._backend
    assert isinstance(backend, PoolBackend)
    return [e.served for e in backend.endpoints]


# ------------------------------------------------------------------ specs


def test_spec_syntax():
    assert parse_spec("http://a:8000/v1").kind == "http"
    assert parse_spec("http://a:8000/v1#3").max_in_flight == 3
    assert parse_spec("hf:/models/qwen").target == "/models/qwen"
    assert str(parse_spec("vllm:Qwen/Qwen3-VL-8B-Instruct")) == "vllm:Qwen/Qwen3-VL-8B-Instruct"
    for bad, words in [("localhost:8000", "not understood"), ("hf:", "model id"), ("http://a/v1#0", "after '#'"),
                       ("http://a/v1#x", "after '#'")]:
        with pytest.raises(UsageError, match=words):
            parse_spec(bad)
    with pytest.raises(UsageError, match="pooled"):
        parse_specs(["http://a/v1", "hf:/m"])
    with pytest.raises(UsageError, match="pooled"):
        LLMClient(LLMConfig(base_url="http://a/v1", pool=("hf:/m",)))


def test_single_url_with_a_limit_sets_the_clients_limit():
    client = LLMClient(LLMConfig(base_url="http://127.0.0.1:9/v1#2"))
    assert client.config.base_url == "http://127.0.0.1:9/v1" and client.config.max_concurrency == 2


# ------------------------------------------------------------------ the pool


def test_requests_spread_and_respect_per_endpoint_limits():
    counts = [{"now": 0, "max": 0}, {"now": 0, "max": 0}]
    with ScriptedLLM(responder=answering(0.05, counts[0])) as a, \
            ScriptedLLM(responder=answering(0.05, counts[1])) as b:

        async def main() -> tuple[list[str], list[int]]:
            async with LLMClient(pool_config(f"{a.base_url}#2", f"{b.base_url}#3")) as client:
                return await ask_many(client, 20), served(client)

        texts, per_endpoint = asyncio.run(main())
    assert texts == ["ok"] * 20
    assert sum(per_endpoint) == 20 and min(per_endpoint) > 0
    assert counts[0]["max"] <= 2 and counts[1]["max"] <= 3


def test_an_endpoint_that_is_down_is_skipped():
    with ScriptedLLM(responder=answering()) as up:
        down = ScriptedLLM().start()
        down_url = down.base_url
        down.stop()  # connection refused from now on

        async def main() -> tuple[list[str], list[int], int]:
            async with LLMClient(pool_config(down_url, up.base_url)) as client:
                texts = await ask_many(client, 8)
                return texts, served(client), client.usage.retries

        texts, per_endpoint, retries = asyncio.run(main())
    assert texts == ["ok"] * 8
    assert per_endpoint == [0, 8]
    assert retries >= 1  # at least one request met the dead endpoint first and moved on


def test_an_endpoint_going_down_mid_run_loses_no_request():
    with ScriptedLLM(responder=answering(0.01)) as a, ScriptedLLM(responder=answering(0.01)) as b:

        async def main() -> tuple[list[str], list[int]]:
            async with LLMClient(pool_config(f"{a.base_url}#2", f"{b.base_url}#2")) as client:
                first = await ask_many(client, 6)
                assert min(served(client)) > 0  # both were in use
                a.stop()
                second = await ask_many(client, 12)
                return first + second, served(client)

        texts, per_endpoint = asyncio.run(main())
    assert texts == ["ok"] * 18
    assert sum(per_endpoint) == 18


def test_a_slow_endpoint_times_out_and_the_other_answers():
    with ScriptedLLM(responder=answering(1.5)) as slow, ScriptedLLM(responder=answering()) as fast:

        async def main() -> tuple[list[str], list[int], list[int]]:
            config = pool_config(slow.base_url, fast.base_url, timeout_s=0.3)
            async with LLMClient(config) as client:
                texts = await ask_many(client, 6)
                backend = client._backend
                return texts, served(client), [e.failed for e in backend.endpoints]

        texts, per_endpoint, failed = asyncio.run(main())
    assert texts == ["ok"] * 6
    assert per_endpoint[0] == 0 and per_endpoint[1] == 6
    assert failed[0] >= 1 and failed[1] == 0


def test_every_endpoint_down_fails_with_the_pool_named():
    dead = [ScriptedLLM().start() for _ in range(2)]
    urls = [d.base_url for d in dead]
    for d in dead:
        d.stop()

    async def main() -> None:
        async with LLMClient(pool_config(*urls, max_retries=2)) as client:
            await client.chat(MESSAGES)

    with pytest.raises(RunFailed, match="every LLM endpoint of the pool failed") as info:
        asyncio.run(main())
    assert info.value.cause == "llm_unavailable"


def test_a_rejected_request_is_not_sent_to_the_other_endpoints():
    with ScriptedLLM([Reply.error(400, "bad request")]) as a, ScriptedLLM([Reply.error(400, "bad request")]) as b:

        async def main() -> None:
            async with LLMClient(pool_config(a.base_url, b.base_url)) as client:
                await client.chat(MESSAGES)

        with pytest.raises(RunFailed) as info:
            asyncio.run(main())
        assert info.value.cause == "llm_rejected"
        assert len(a.requests) + len(b.requests) == 1
