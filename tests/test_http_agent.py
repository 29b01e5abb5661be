"""The agent endpoint of the HTTP API through a real uvicorn on 127.0.0.1, with the tiny SAM 3 engine and the scripted
OpenAI-compatible LLM server: JSON answers, streamed steps, follow-ups on a thread, and LLM failures."""

from __future__ import annotations

import http_api_fixtures
import httpx
import numpy as np
from conftest import random_image
from http_api_fixtures import call, llm_config
from http_helpers import SEED, b64, decode_png, png_of, serve, sse_events

from agent.testing import Reply, message_texts
from sam3_core.postprocess import rle_to_mask

image_png = http_api_fixtures.image_png  # a shared fixture, by name (``llm`` is conftest's)


def test_agent_json_answer_with_overlay_and_mask(engine, llm, image_png):
    llm.add(call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[1]))
    with serve(engine, llm=llm_config(llm)) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        response = client.post("/v1/agent", json={"image": {"base64": b64(image_png)}, "query": "the cup",
                                                  "include_overlay": True, "include_mask_png": True})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["status"] == "answered" and answer["mask_ids"] == [1] and answer["steps"] == 2
        assert answer["masks"][0]["phrase"] == "cup" and answer["usage"]["calls"] == 2
        mask = decode_png(answer["mask_png"]) > 0
        assert np.array_equal(mask, rle_to_mask(answer["masks"][0]["rle"])) and mask.any()
        assert decode_png(answer["overlay_png"]).shape == (90, 120, 3)
        assert 'sam3_agent_queries_total{status="answered"} 1.0' in client.get("/metrics").text


def test_agent_streams_each_step_then_the_answer(engine, llm, image_png):
    llm.add(call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[7]),
            call("select_masks_and_return", mask_ids=[1]))
    with serve(engine, llm=llm_config(llm)) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        body = {"image": {"base64": b64(image_png)}, "query": "the cup", "stream": True, "include_overlay": True}
        with client.stream("POST", "/v1/agent", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response)
    kinds = [e["type"] for e in events]
    assert kinds == ["tool_call", "tool_result", "tool_call", "retry", "tool_call", "tool_result", "answer"]
    assert events[0]["name"] == "segment_phrase" and events[0]["arguments"] == {"text_prompt": "cup"}
    assert events[1]["candidates"][0]["id"] == 1 and "found" in events[1]["text"]
    assert decode_png(events[1]["overlay_png"]).shape == (90, 120, 3)
    assert "Unknown mask id" in events[3]["text"]
    assert events[-1]["answer"]["mask_ids"] == [1] and events[-1]["answer"]["overlay_png"]


def test_agent_follow_up_on_a_thread_and_another_image_is_409(engine, llm, image_png):
    llm.add(call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[1]),
            call("segment_phrase", text_prompt="woman"), call("select_masks_and_return", mask_ids=[1, 2]))
    with serve(engine, llm=llm_config(llm)) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        image = {"base64": b64(image_png)}
        first = client.post("/v1/agent", json={"image": image, "query": "the cup", "thread_id": "kitchen"}).json()
        assert first["thread_id"] == "kitchen" and first["mask_ids"] == [1]
        second = client.post("/v1/agent", json={"image": image, "query": "and the woman", "thread_id": "kitchen"})
        assert second.json()["mask_ids"] == [1, 2] and second.json()["phrases_tried"] == ["woman"]
        assert "Masks found for earlier queries" in "\n".join(message_texts(llm.requests[2]))
        other = {"base64": b64(png_of(random_image(np.random.default_rng(SEED + 1))))}
        conflict = client.post("/v1/agent", json={"image": other, "query": "x", "thread_id": "kitchen"})
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "thread_image_mismatch"


def test_agent_errors_503_502_504_and_as_stream_events(engine, llm, image_png):
    body = {"image": {"base64": b64(image_png)}, "query": "the cup"}
    with serve(engine) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        assert client.post("/v1/agent", json=body).status_code == 503  # no LLM configured
    llm.add(Reply.error(500, "model crashed"), Reply.error(500, "model crashed"), Reply.text("late", delay_s=3))
    with serve(engine, llm=llm_config(llm), agent_timeout_s=0.5) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        failed = client.post("/v1/agent", json=body)
        assert failed.status_code == 502 and failed.json()["error"]["code"] == "llm_unavailable"
        with client.stream("POST", "/v1/agent", json={**body, "stream": True}) as response:
            events = sse_events(response)
        assert [e["type"] for e in events] == ["error"] and events[0]["error"]["status"] == 502
        slow = client.post("/v1/agent", json=body)
        assert slow.status_code == 504 and "0.5s" in slow.json()["error"]["message"]
        assert 'sam3_agent_queries_total{status="error"} 3.0' in client.get("/metrics").text
