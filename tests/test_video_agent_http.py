"""``POST /v1/video/agent`` through a real uvicorn: streamed steps and progress, then the masklets.

The LLM is the scripted one; the video engine is a tiny random one, so which objects the phrase finds is
not asserted, only that the chosen masklet comes back with one RLE per frame of the video.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from http_helpers import client_of, serve, sse_events
from video_fixtures import HEIGHT, WIDTH

from agent.llm import LLMConfig
from agent.testing import Reply, ScriptedLLM, message_texts
from sam3_core.postprocess import rle_to_mask

FRAMES = 6
URL = "/v1/video/agent"


def call(name: str, **arguments) -> Reply:
    return Reply.text(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")


def llm_config(server: ScriptedLLM) -> LLMConfig:
    return LLMConfig(base_url=server.base_url, model=server.model, api_key="test", timeout_s=20.0, max_retries=0)


def upload(clip: Path, **params) -> dict:
    return {"files": {"video": ("clip.mp4", clip.read_bytes(), "video/mp4")}, "data": {"params": json.dumps(params)}}


def choosing_responder():
    """Track "disc", then answer with an unknown id (a retry that lists the valid ids), then the first valid one."""
    count = {"n": 0}

    def respond(body: dict) -> Reply:
        count["n"] += 1
        if count["n"] == 1:
            return call("segment_phrase", text_prompt="disc")
        if count["n"] == 2:
            return call("select_masklets_and_return", masklet_ids=[999])
        valid = re.search(r"Valid ids are \[([0-9, ]+)\]", message_texts(body)[-1])
        if valid is None:
            return call("report_no_mask")
        return call("select_masklets_and_return", masklet_ids=[int(valid.group(1).split(",")[0])])

    return respond


def test_streamed_steps_progress_then_masklets(engine, video_engine, clip):
    with ScriptedLLM(responder=choosing_responder()) as llm:
        server = serve(engine, video_engine, video=True, llm=llm_config(llm))
        with client_of(server) as client, client.stream("POST", URL, **upload(clip, query="the red disc")) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response)
        assert not llm.errors, llm.errors
    kinds = [e["type"] for e in events]
    assert kinds[0] == "tool_call" and kinds[-1] == "answer", kinds
    assert "tool_result" in kinds and "retry" in kinds
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and progress[-1]["done"] and progress[-1]["frames_done"] == progress[-1]["total"] == FRAMES
    assert all(e["fps"] >= 0 and e["objects"] >= 0 for e in progress)
    assert kinds.index("progress") < kinds.index("tool_result")  # the phrase is tracked before its result
    answer = events[-1]["answer"]
    assert answer["query"] == "the red disc" and answer["videos"][0]["length"] == FRAMES
    if answer["status"] == "answered":  # random weights: the phrase may find nothing
        [annotation] = [a for a in answer["annotations"] if a["object_id"] in answer["masklet_ids"]]
        assert len(annotation["segmentations"]) == FRAMES
        masks = [rle_to_mask(rle) for rle in annotation["segmentations"] if rle is not None]
        assert masks and all(m.shape == (HEIGHT, WIDTH) for m in masks)
    else:
        assert answer["status"] == "no_mask"
    assert video_engine.session_ids() == []  # every session of the query is closed
    assert not list(server.app.state.video_sessions.root.rglob("upload*"))  # the upload is deleted


def test_json_answer_and_errors(engine, video_engine, clip):
    with ScriptedLLM([call("report_no_mask")]) as llm:
        server = serve(engine, video_engine, video=True, llm=llm_config(llm))
        with client_of(server) as client:
            answer = client.post(URL, **upload(clip, query="a unicorn", stream=False))
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "no_mask" and answer.json()["masklet_ids"] == []
            assert answer.json()["videos"][0]["length"] == FRAMES
            missing = client.post(URL, **upload(clip, stream=False))
            assert missing.status_code == 422
            not_multipart = client.post(URL, json={"query": "x"})
            assert not_multipart.status_code == 415
    no_llm = serve(engine, video_engine, video=True)
    with client_of(no_llm) as client:
        assert client.post(URL, **upload(clip, query="x")).status_code == 503


def test_llm_failure_ends_the_stream_with_an_error(engine, video_engine, clip):
    with ScriptedLLM([Reply.error(500, "the GPU caught fire")]) as llm:
        server = serve(engine, video_engine, video=True, llm=llm_config(llm))
        with client_of(server) as client, client.stream("POST", URL, **upload(clip, query="the red disc")) as response:
            events = sse_events(response)
    assert events[-1]["type"] == "error" and events[-1]["error"]["status"] >= 500
    assert video_engine.session_ids() == []
