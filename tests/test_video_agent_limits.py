"""Bounds of the video agent's clips (``serving.clips``) over HTTP: ``max_frames`` over the server's cap is 422
before any model work, a longer clip is sampled evenly, clips over the duration or pixel limit are 413."""

from __future__ import annotations

import re

import numpy as np
import pytest
from http_helpers import client_of, serve
from test_video_agent_http import call, llm_config, upload
from video_fixtures import HEIGHT, WIDTH, moving_shapes, write_frame_folder, write_mp4

from agent.testing import ScriptedLLM, message_texts
from sam3_core.video import open_video
from serving.clips import ClipLimits, ClipRefused, prepare_clip

URL = "/v1/video/agent"
FRAMES = 12


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return write_mp4(moving_shapes(FRAMES), tmp_path_factory.mktemp("clips") / "long.mp4", gop=5)


def test_frames_for_caps_the_request():
    limits = ClipLimits(max_frames=10)
    assert limits.frames_for(None) == 10 and limits.frames_for(4) == 4
    with pytest.raises(ClipRefused) as caught:
        limits.frames_for(11)
    assert caught.value.status == 422 and "max_frames 11" in str(caught.value) and "cap of 10" in str(caught.value)


@pytest.mark.parametrize("kind", ["mp4", "folder"])
def test_prepare_clip_samples_evenly_and_losslessly(kind, tmp_path):
    frames = moving_shapes(FRAMES)
    video = (write_mp4(frames, tmp_path / "clip.mp4", gop=5) if kind == "mp4"
             else write_frame_folder(frames, tmp_path / "frames_in"))
    plan = prepare_clip(video, tmp_path / "work", 5, ClipLimits())
    assert plan.stride == 3 and plan.frame_indices == (0, 3, 6, 9) and plan.source_frames == FRAMES
    sampled, source = open_video(plan.video), open_video(str(video))
    try:
        assert sampled.num_frames == 4 and (sampled.height, sampled.width) == (HEIGHT, WIDTH)
        assert sampled.file_names() == ["000000.png", "000003.png", "000006.png", "000009.png"]
        for position, index in enumerate(plan.frame_indices):  # PNG is lossless: the decoded frame itself
            assert np.array_equal(sampled.frame(position), source.frame(index))
    finally:
        sampled.close()
        source.close()
    unsampled = prepare_clip(video, tmp_path / "work2", FRAMES, ClipLimits())
    assert unsampled.stride == 1 and unsampled.video == str(video) and not (tmp_path / "work2").exists()


def test_over_the_cap_is_422_before_any_model_work(engine, video_engine, long_clip):
    with ScriptedLLM([]) as llm:  # an empty script: any call to the model would be an error
        server = serve(engine, video_engine, video=True, llm=llm_config(llm), video_agent_max_frames=8)
        with client_of(server) as client:
            over = client.post(URL, **upload(long_clip, query="the red disc", max_frames=9))
            schema = client.get("/openapi.json").json()
            too_long = serve(engine, video_engine, video=True, llm=llm_config(llm), video_max_seconds=0.1)
        with client_of(too_long) as client:
            long = client.post(URL, **upload(long_clip, query="the red disc"))
        too_big = serve(engine, video_engine, video=True, llm=llm_config(llm), max_pixels=WIDTH * HEIGHT - 1)
        with client_of(too_big) as client:
            big = client.post(URL, **upload(long_clip, query="the red disc", stream=False))
        assert not llm.requests and not llm.errors
    assert over.status_code == 422, over.text
    error = over.json()["error"]
    assert error["code"] == "max_frames_over_cap" and "max_frames 9" in error["message"] and "8" in error["message"]
    assert long.status_code == 413 and long.json()["error"]["code"] == "video_too_long"
    assert "0.1 s" in long.json()["error"]["message"]
    assert big.status_code == 413 and big.json()["error"]["code"] == "video_too_large"
    assert video_engine.session_ids() == []
    operation = schema["paths"][URL]["post"]
    field = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["max_frames"]
    assert {"type": "integer", "minimum": 1, "maximum": 8} in field["anyOf"]
    assert "sampled evenly" in field["description"]
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert "progress" in schema["components"]["schemas"]["VideoAgentEvent"]["properties"]["type"]["enum"]


def test_a_longer_clip_is_sampled_to_max_frames(engine, video_engine, long_clip):
    with ScriptedLLM([call("report_no_mask")]) as llm:
        server = serve(engine, video_engine, video=True, llm=llm_config(llm), video_agent_max_frames=5)
        with client_of(server) as client:
            answer = client.post(URL, **upload(long_clip, query="the red disc", stream=False))
            default = client.post(URL, **upload(long_clip, query="x", stream=False, max_frames=0))
        assert not llm.errors, llm.errors
        [request] = llm.requests
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["videos"][0]["length"] == 4 and document["videos"][0]["name"] == "upload.mp4"
    assert document["videos"][0]["file_names"] == ["000000.png", "000003.png", "000006.png", "000009.png"]
    assert document["clip"] == {"source_frames": FRAMES, "fps": pytest.approx(document["clip"]["fps"]),
                                "width": WIDTH, "height": HEIGHT, "stride": 3, "frames": 4,
                                "frame_indices": [0, 3, 6, 9]}
    opening = message_texts(request)[1]
    assert re.search(r"\b4 frames\b", opening), opening  # the model is told about the sampled clip
    assert default.status_code == 422  # max_frames >= 1 (schema)


def test_cli_flags_reach_the_settings(monkeypatch):
    import cli.serve as serve_cli
    from cli.main import build_parser

    seen = {}
    monkeypatch.setattr("serving.http.server.serve_forever", lambda app, *a, **k: seen.update(app=app))
    monkeypatch.setattr("serving.mcp.server.run_mcp_server", lambda factory, options, **k: seen.update(mcp=options))
    args = build_parser().parse_args(["serve", "--model", "m", "--video-agent-max-frames", "40",
                                      "--video-max-seconds", "12.5", "--chat-max-clips", "3"])
    assert serve_cli._serve(args) == 0
    settings = seen["app"].state.runtime.settings
    assert (settings.video_agent_max_frames, settings.video_max_seconds, settings.chat_max_clips) == (40, 12.5, 3)
    assert serve_cli._mcp(build_parser().parse_args(["mcp", "--model", "m", "--video-agent-max-frames", "7"])) == 0
    assert seen["mcp"].video_agent_max_frames == 7 and seen["mcp"].video_max_seconds == 600.0
