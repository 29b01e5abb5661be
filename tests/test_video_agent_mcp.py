"""The MCP ``reason_segment_video`` tool, in process: registered with an LLM only, runs the video agent."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from mcp.server.mcpserver.exceptions import ToolError
from test_video_agent_http import call, choosing_responder
from video_fixtures import moving_shapes, write_mp4

from agent.llm import LLMConfig
from agent.testing import ScriptedLLM
from sam3_core.postprocess import rle_to_mask
from sam3_core.video import VideoEngine, VideoOptions
from serving.mcp.server import McpOptions, build_mcp_server
from serving.mcp.video import add_video_tool

FRAMES = 6


def server_with(video_checkpoint: str, llm: ScriptedLLM | None, **limits):
    config = None if llm is None else LLMConfig(base_url=llm.base_url, model=llm.model, api_key="test",
                                                timeout_s=20.0, max_retries=0)
    options = McpOptions(llm=config, **limits)

    def load_video() -> VideoEngine:
        video_options = VideoOptions(max_sessions=2, score_threshold=0.05, new_object_threshold=0.1, hotstart_delay=2)
        return VideoEngine.from_pretrained(video_checkpoint, device="cpu", options=video_options)

    server, image_holder = build_mcp_server(lambda: SimpleNamespace(close=lambda: None), options)  # image tools unused
    video_holder = add_video_tool(server, load_video, options)
    return server, (image_holder, video_holder)


def test_reason_segment_video_answers_with_masklets(video_checkpoint, clip):
    with ScriptedLLM(responder=choosing_responder()) as llm:
        server, holders = server_with(video_checkpoint, llm)
        try:
            tools = {tool.name: tool for tool in asyncio.run(server.list_tools())}
            result = asyncio.run(server.call_tool("reason_segment_video", {
                "query": "the red disc", "video_path": str(clip), "include_masks": True}))
            engine = asyncio.run(holders[1].get())
            assert engine.session_ids() == []
        finally:
            for holder in holders:
                holder.close()
    assert {"track_video", "reason_segment_video"} <= set(tools)
    assert "masklet" in tools["reason_segment_video"].description
    assert "masklet_ids" in tools["reason_segment_video"].output_schema["properties"]
    data = result.structured_content
    assert data["query"] == "the red disc" and data["num_frames"] == FRAMES and data["phrases_tried"] == ["disc"]
    if data["status"] == "answered":  # random weights: the phrase may find nothing
        [masklet] = data["masklets"]
        assert masklet["id"] == data["masklet_ids"][0] and masklet["frames"]
        assert rle_to_mask(masklet["frames"][0]["rle"]).any()
        assert [c.type for c in result.content] == ["text", "image"]
    else:
        assert not result.is_error and data["masklets"] == []


def test_without_an_llm_the_tool_is_not_offered(video_checkpoint):
    server, holders = server_with(video_checkpoint, None)
    try:
        names = {tool.name for tool in asyncio.run(server.list_tools())}
    finally:
        for holder in holders:
            holder.close()
    assert "track_video" in names and "reason_segment_video" not in names


def test_max_frames_is_capped_and_longer_videos_are_sampled(video_checkpoint, tmp_path):
    long_clip = write_mp4(moving_shapes(2 * FRAMES), tmp_path / "long.mp4", gop=5)
    with ScriptedLLM([call("report_no_mask")]) as llm:
        server, holders = server_with(video_checkpoint, llm, video_agent_max_frames=FRAMES)
        try:
            with pytest.raises(ToolError, match=rf"max_frames {FRAMES + 1} is over this server's cap of {FRAMES} "):
                asyncio.run(server.call_tool("reason_segment_video", {
                    "query": "the red disc", "video_path": str(long_clip), "max_frames": FRAMES + 1}))
            assert not llm.requests  # refused before the model was asked
            sampled = asyncio.run(server.call_tool("reason_segment_video", {
                "query": "the red disc", "video_path": str(long_clip)}))
        finally:
            for holder in holders:
                holder.close()
        assert not llm.errors, llm.errors
    data = sampled.structured_content
    assert data["status"] == "no_mask" and data["num_frames"] == FRAMES
    assert data["clip"]["stride"] == 2 and data["clip"]["frame_indices"] == list(range(0, 2 * FRAMES, 2))
