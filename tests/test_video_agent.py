"""The video agent over real HTTP: the shared agent graph, the scripted OpenAI-compatible server, tiny SAM 3.

The tiny checkpoint has random weights: with the low detection thresholds of the video engine tests
every phrase finds one object on every frame of the short synthetic video, and every phrase finds
practically the same one. So two phrases give two masklets only with ``duplicate_iou=1.0`` (no track is
ever a duplicate); with the default they give one masklet and a duplicate note.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image
from video_fixtures import moving_shapes, write_mp4

from agent.keyframes import choose_keyframes, spread
from agent.llm import LLMConfig
from agent.settings import VIDEO_AGENT_DEFAULTS, AgentSettings, VideoAgentSettings, VideoSettings
from agent.testing import Reply, ScriptedLLM, image_urls, message_texts
from agent.video_agent import VideoAgentAnswer, VideoAgentRunFailed, run_video_agent_sync
from cli.main import main
from sam3_core.errors import UsageError
from sam3_core.video import VideoEngine, VideoOptions, open_video

FRAMES, HEIGHT, WIDTH = 6, 84, 112
LOW = dict(score_threshold=0.05, new_object_threshold=0.1, hotstart_delay=2)
VIDEO_TOOLS = {"segment_phrase", "refine_masklet", "select_masklets_and_return", "report_no_mask"}
PROTOCOLS = ["native", "text"]


def call(name: str, protocol: str = "text", **arguments: Any) -> Reply:
    """A scripted reply calling ``name`` in the given tool protocol."""
    if protocol == "native":
        return Reply.call(name, **arguments)
    body = json.dumps({"name": name, "arguments": arguments})
    return Reply.text(f"I will call {name}.\n<tool_call>{body}</tool_call>")


def all_text(body: dict) -> str:
    return "\n".join(message_texts(body))


def decoded(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


@pytest.fixture(scope="module")
def video_engine(video_checkpoint):
    options = VideoOptions(max_sessions=4, **LOW)
    with VideoEngine.from_pretrained(video_checkpoint, device="cpu", options=options) as eng:
        yield eng


@pytest.fixture(scope="module")
def frames():
    return moving_shapes(FRAMES, height=HEIGHT, width=WIDTH)


@pytest.fixture
def server():
    with ScriptedLLM() as srv:
        yield srv
    assert not srv.errors, srv.errors


def run(video_engine, frames, server: ScriptedLLM, protocol: str = "text", query: str = "the green disc",
        **settings: Any) -> VideoAgentAnswer:
    config = LLMConfig(base_url=server.base_url, model=server.model, api_key="test", timeout_s=20.0, max_retries=0,
                       tool_protocol=protocol)
    video_names = {f.name for f in dataclasses.fields(VideoSettings)}
    video = VideoSettings(**{k: v for k, v in settings.items() if k in video_names})
    agent = dataclasses.replace(VIDEO_AGENT_DEFAULTS, **{k: v for k, v in settings.items() if k not in video_names})
    answer = run_video_agent_sync(video_engine, config, frames, query,
                                  settings=VideoAgentSettings(agent=agent, video=video))
    assert video_engine.session_ids() == []  # every session of the query is closed
    return answer


def present_frames(answer: VideoAgentAnswer) -> dict[int, list[int]]:
    """Masklet id -> frames it has a mask on, from the answer's YouTube-VIS document."""
    return {a["object_id"]: [i for i, rle in enumerate(a["segmentations"]) if rle is not None]
            for a in answer.document["annotations"]}


# ----------------------------------------------------------------------------------------- answers


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_segment_then_select_gives_the_masklets_on_every_frame(video_engine, frames, server, protocol):
    server.add(call("segment_phrase", protocol, text_prompt="red disc"),
               call("segment_phrase", protocol, text_prompt="green disc"),
               call("select_masklets_and_return", protocol, masklet_ids=[2]))
    answer = run(video_engine, frames, server, protocol, duplicate_iou=1.0, max_frames=4)
    assert answer.status == "answered" and answer.ok and answer.masklet_ids == [2]
    assert answer.phrases == ["green disc"] and answer.phrases_tried == ["red disc", "green disc"]
    assert answer.steps == 3 and answer.usage.calls == 3
    # explored over 4 frames, then tracked on to the end: the answer covers the whole video
    assert present_frames(answer) == {2: list(range(FRAMES))}
    masks, ids = answer.frame_masks(FRAMES - 1)
    assert ids == [2] and masks.shape == (1, HEIGHT, WIDTH) and masks.any()
    assert answer.document["videos"][0]["length"] == FRAMES
    assert [c["name"] for c in answer.document["categories"]] == ["green disc"]
    # the raw frames with the query, then the query with the latest keyframe sheet only (pruned context)
    assert [len(image_urls(r)) for r in server.requests] == [1, 2, 2]
    sheet = decoded(image_urls(server.requests[2])[-1])
    assert sheet.width > 2 * WIDTH and sheet.height > 2 * HEIGHT  # a 2 x 2 grid of keyframes
    last = all_text(server.requests[2])
    assert 'segment_phrase("green disc")` tracked 1 new masklet(s) through the video: ids [2]' in last
    assert "tracked 1 new masklet(s) through the video: ids [1]" not in last
    assert '- 1 ("red disc"): frames 0-3 (4 frames)' in last and "the green disc" in last
    if protocol == "native":
        assert {t["function"]["name"] for t in server.requests[0]["tools"]} == VIDEO_TOOLS
        tool_message = next(m for m in server.requests[2]["messages"] if m["role"] == "tool")
        assert "ids [2]" in tool_message["content"]
    else:
        assert "tools" not in server.requests[0]
        assert "## refine_masklet" in message_texts(server.requests[0], "system")[0]


def test_keyframes_as_separate_images(video_engine, frames, server):
    server.add(call("segment_phrase", text_prompt="disc"), call("select_masklets_and_return", masklet_ids=[1]))
    answer = run(video_engine, frames, server, keyframes=3, keyframe_sheet=False, refinement=False)
    assert [len(image_urls(r)) for r in server.requests] == [3, 6]
    assert {decoded(url).width for url in image_urls(server.requests[1])} == {WIDTH}
    assert "frames (0, 2, 5)" in all_text(server.requests[0])  # the raw frames, spread over the video
    assert "## refine_masklet" not in message_texts(server.requests[0], "system")[0]
    assert present_frames(answer) == {1: list(range(FRAMES))}


def test_report_no_mask(video_engine, frames, server):
    server.add(call("segment_phrase", text_prompt="giraffe"), call("report_no_mask"))
    answer = run(video_engine, frames, server, query="the giraffe")
    assert answer.status == "no_mask" and answer.ok and answer.masklet_ids == []
    assert answer.document["annotations"] == [] and answer.frames() == {}
    assert answer.frame_masks(0) == (None, [])
    answer.raise_for_status()
    assert answer.to_json()["videos"][0]["length"] == FRAMES


# ----------------------------------------------------------------------------------------- model mistakes


def test_unknown_masklet_id_is_retried_and_duplicates_keep_one_id(video_engine, frames, server):
    server.add(call("segment_phrase", text_prompt="red disc"), call("segment_phrase", text_prompt="cup"),
               call("select_masklets_and_return", masklet_ids=[99]),
               call("select_masklets_and_return", masklet_ids=[1]))
    answer = run(video_engine, frames, server)
    assert answer.status == "answered" and answer.masklet_ids == [1] and answer.steps == 4
    after_cup = all_text(server.requests[2])
    assert 'segment_phrase("cup")` found no new masklets' in after_cup
    assert "already found earlier: ids [1] (unchanged)" in after_cup
    assert "Unknown masklet id(s) [99]. Valid ids are [1]." in all_text(server.requests[3])
    assert [r["outcome"] for r in answer.trace if r["node"] == "run_tool"] == ["ok", "ok", "retry", "final"]


def test_refine_masklet_keeps_its_id(video_engine, frames, server):
    server.add(call("segment_phrase", text_prompt="red disc"),
               call("refine_masklet", masklet_id=7, frame_index=2, points=[[30, 30]], point_labels=[1]),
               call("refine_masklet", masklet_id=1, frame_index=2, points=[[30, 30], [90, 60]], point_labels=[1, 0]),
               call("select_masklets_and_return", masklet_ids=[1]))
    answer = run(video_engine, frames, server, max_frames=4)
    assert answer.status == "answered" and answer.masklet_ids == [1] and answer.refinements == 1
    assert "Unknown masklet id 7. Valid ids are [1]." in all_text(server.requests[2])
    after = all_text(server.requests[3])
    assert "`refine_masklet` tracked masklet 1 through the video again from your points on frame 2" in after
    assert "refined 1x" in after and len(image_urls(server.requests[3])) == 2
    refine = [r for r in answer.trace if r["node"] == "run_tool" and r["tool"] == "refine_masklet"]
    assert [r["outcome"] for r in refine] == ["retry", "ok"] and refine[1]["sam_s"] > 0
    assert set(present_frames(answer)) == {1} and max(present_frames(answer)[1]) == FRAMES - 1


def test_llm_failure_raises_with_the_trace(video_engine, frames):
    with ScriptedLLM([Reply.error(500, "the GPU caught fire")]) as server, \
            pytest.raises(VideoAgentRunFailed) as info:
        run(video_engine, frames, server)
    assert info.value.cause == "llm_unavailable" and "the GPU caught fire" in str(info.value)
    assert info.value.answer.status == "failed" and info.value.answer.trace_json()["steps"][0]["outcome"] == "failed"
    assert video_engine.session_ids() == []


def test_settings_are_checked():
    with pytest.raises(UsageError, match="examine_each_mask"):
        VideoAgentSettings(agent=AgentSettings(verification=True))
    with pytest.raises(UsageError, match="keyframes"):
        VideoSettings(keyframes=0)


# ----------------------------------------------------------------------------------------- keyframes


def test_keyframes_show_every_masklet_then_spread_out():
    presence = {1: range(0, 100), 2: [97, 98], 3: [40]}
    chosen = choose_keyframes(presence, 4)
    assert len(chosen) == 4 and chosen == sorted(chosen)
    assert all(set(frames) & set(chosen) for frames in presence.values())
    assert choose_keyframes({1: [5, 6]}, 4) == [5, 6] and choose_keyframes({}, 4) == []
    assert spread(list(range(10)), 4) == [0, 3, 6, 9] and spread([3, 4], 5) == [3, 4]


# ----------------------------------------------------------------------------------------- looking at answers


def test_answer_plot_and_save(video_engine, frames, server, tmp_path):
    from sam3_core.drawing import color_for_id

    server.add(call("segment_phrase", text_prompt="disc"), call("select_masklets_and_return", masklet_ids=[1]))
    answer = run(video_engine, frames, server)
    folder = answer.save(tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == ["result.json", "trace.json"]
    assert json.loads((folder / "result.json").read_text()) == json.loads(json.dumps(answer.to_json()))
    assert json.loads((folder / "trace.json").read_text())["steps"] == json.loads(json.dumps(answer.trace))
    sheet = answer.plot()  # 4 keyframes in a 2 x 2 grid, with a legend panel
    assert sheet.width > 2 * WIDTH * 0.9 and sheet.height > 2 * HEIGHT
    pixels = np.asarray(sheet).reshape(-1, 3)
    assert (pixels == np.array(color_for_id(1))).all(axis=1).sum() >= 9  # the legend swatch of masklet 1
    one = answer.plot(frames=[FRAMES - 1])
    assert one.height < sheet.height  # one keyframe: one row of the grid
    bare = dataclasses.replace(answer, video=None)
    with pytest.raises(UsageError, match="no video"):
        bare.plot()
    assert bare.plot(frames=[0], video=frames).size == answer.plot(frames=[0]).size


# ----------------------------------------------------------------------------------------- command line


def test_cli_segment_video(video_checkpoint, frames, tmp_path):
    video = write_mp4(frames, tmp_path / "clip.mp4")
    segment = json.dumps({"name": "segment_phrase", "arguments": {"text_prompt": "red disc"}})
    select = json.dumps({"name": "select_masklets_and_return", "arguments": {"masklet_ids": [1]}})
    out = tmp_path / "run"
    with ScriptedLLM([Reply.text(f"<tool_call>{segment}</tool_call>"),
                      Reply.text(f"<tool_call>{select}</tool_call>")]) as server:
        status = main(["segment-video", str(video), "the red disc", "--model", video_checkpoint,
                       "--llm-url", server.base_url, "--llm-model", server.model, "--threshold", "0.05",
                       "--new-threshold", "0.1", "--max-frames", "4", "--out", str(out), "--overlay",
                       "--device", "cpu", "--no-progress"])
        assert status == 0
        assert [len(image_urls(r)) for r in server.requests] == [1, 2]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "answered" and result["masklet_ids"] == [1]
    assert result["videos"][0]["length"] == FRAMES and result["videos"][0]["name"] == str(video)
    (annotation,) = result["annotations"]
    assert annotation["object_id"] == 1 and annotation["phrase"] == "red disc"
    assert len(annotation["segmentations"]) == FRAMES and annotation["segmentations"][0]["size"] == [HEIGHT, WIDTH]
    trace = json.loads((out / "trace.json").read_text())
    assert trace["status"] == "answered" and [s["node"] for s in trace["steps"]][:2] == ["call_model", "run_tool"]
    assert open_video(out / "overlay.mp4").num_frames == FRAMES
