"""The MCP server in its own process (``python -m cli.serve mcp``, stdio transport), driven by the
official MCP client: list the tools, call each one, check the structured results and the overlay image.

The server loads a tiny random SAM 3 checkpoint (with the video files, so ``--video`` works) and talks to the
scripted LLM over real HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import random_image
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from PIL import Image

from agent.testing import Reply, ScriptedLLM
from sam3_core.postprocess import rle_to_mask

SEED = 6161
ROOT = Path(__file__).resolve().parents[1]


def call(name: str, **arguments: Any) -> Reply:
    return Reply.text(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")


def overlay_of(result: Any) -> np.ndarray:
    """The decoded PNG of the one image content block of a tool result."""
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(images[0].data))))


async def exercise(params: StdioServerParameters, errlog: Any, image_file: Path, image_b64: str,
                   video_file: Path) -> dict[str, Any]:
    """One MCP session: list the tools and call each; returns what the assertions need."""
    out: dict[str, Any] = {}
    async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        out["server"] = init.server_info.name
        out["tools"] = {t.name: t for t in (await session.list_tools()).tools}
        out["by_path"] = await session.call_tool("segment_phrase", {"phrases": ["cup", "woman"],
                                                                    "image_path": str(image_file)})
        out["by_base64"] = await session.call_tool("segment_phrase", {"phrases": ["cup"], "image_base64": image_b64})
        out["reason"] = await session.call_tool("reason_segment", {"query": "the cup", "image_base64": image_b64})
        out["no_image"] = await session.call_tool("segment_phrase", {"phrases": ["cup"]})
        out["missing_file"] = await session.call_tool("segment_phrase", {"phrases": ["cup"],
                                                                         "image_path": str(image_file) + ".nope"})
        out["video"] = await session.call_tool("track_video", {"video_path": str(video_file), "phrases": ["disc"],
                                                               "box": [10, 15, 40, 45], "max_frames": 4,
                                                               "include_masks": True})
    return out


@pytest.fixture(scope="module")
def mcp_run(tmp_path_factory) -> dict[str, Any]:
    from video_fixtures import moving_shapes, write_mp4

    from sam3_core.tiny import write_tiny_checkpoint

    folder = tmp_path_factory.mktemp("mcp")
    checkpoint = str(write_tiny_checkpoint(folder / "tiny", video=True, seed=0))
    video_file = write_mp4(moving_shapes(6), folder / "clip.mp4", gop=5)
    image = random_image(np.random.default_rng(SEED))
    image_file = folder / "kitchen.png"
    Image.fromarray(image).save(image_file)
    image_b64 = base64.b64encode(image_file.read_bytes()).decode()
    with ScriptedLLM([call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[1])]) as llm:
        params = StdioServerParameters(
            command=sys.executable, cwd=str(ROOT), env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"},
            args=["-m", "cli.serve", "mcp", "--model", checkpoint, "--device", "cpu", "--video",
                  "--score-threshold", "0.2", "--llm-url", llm.base_url, "--llm-model", llm.model,
                  "--llm-api-key", "test", "--tool-protocol", "text"])
        log_path = folder / "server.log"
        with log_path.open("w") as errlog:
            try:
                out = asyncio.run(asyncio.wait_for(exercise(params, errlog, image_file, image_b64, video_file), 120))
            except BaseException:
                print(log_path.read_text())
                raise
        assert not llm.errors and llm.remaining == 0, llm.errors
    out["image_shape"] = image.shape[:2]
    return out


def test_tools_are_listed_with_descriptions_and_schemas(mcp_run):
    assert mcp_run["server"] == "sam3"
    tools = mcp_run["tools"]
    assert set(tools) == {"segment_phrase", "reason_segment", "track_video", "reason_segment_video"}
    segment, reason = tools["segment_phrase"], tools["reason_segment"]
    assert "short noun phrase" in segment.description and "reason_segment" in segment.description
    assert "follow-up" in reason.description
    assert {"phrases", "image_path", "image_base64", "score_threshold"} <= set(segment.input_schema["properties"])
    assert segment.input_schema["required"] == ["phrases"]
    assert "results" in segment.output_schema["properties"] and "mask_ids" in reason.output_schema["properties"]
    assert segment.annotations.read_only_hint is True


def test_segment_phrase_returns_structured_masks_and_an_overlay(mcp_run):
    result = mcp_run["by_path"]
    assert not result.is_error
    data = result.structured_content
    assert [r["phrase"] for r in data["results"]] == ["cup", "woman"]
    instances = [i for r in data["results"] for i in r["instances"]]
    assert [i["id"] for i in instances] == list(range(1, len(instances) + 1)) and instances
    assert all(i["score"] > 0.2 for i in instances)
    assert rle_to_mask(instances[0]["rle"]).shape == mcp_run["image_shape"]
    text = result.content[0].text
    assert text.startswith("Instances found:") and '"rle"' not in text and '"box_xyxy"' in text
    assert overlay_of(result).shape == (*mcp_run["image_shape"], 3)
    by_base64 = mcp_run["by_base64"].structured_content
    assert by_base64["results"][0] == data["results"][0]


def test_reason_segment_runs_the_agent(mcp_run):
    result = mcp_run["reason"]
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    assert data["status"] == "answered" and data["mask_ids"] == [1] and data["steps"] == 2
    assert data["masks"][0]["phrase"] == "cup" and data["thread_id"]
    assert rle_to_mask(data["masks"][0]["rle"]).any()
    assert result.content[0].text.startswith("Answer: masks [1].")
    assert overlay_of(result).shape == (*mcp_run["image_shape"], 3)


def test_bad_calls_are_tool_errors_the_model_can_read(mcp_run):
    assert mcp_run["no_image"].is_error
    assert "exactly one of image_path and image_base64" in mcp_run["no_image"].content[0].text
    assert mcp_run["missing_file"].is_error and "no such image file" in mcp_run["missing_file"].content[0].text


def test_track_video_follows_objects_through_frames(mcp_run):
    result = mcp_run["video"]
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    assert data["video"]["num_frames"] == 6 and data["frames_processed"] == 4
    assert result.content[0].text.startswith(f"{len(data['tracks'])} object(s) over 4 frame(s).")
    for track in data["tracks"]:  # random weights: which objects survive is not meaningful, their shape is
        assert track["frames"] and {p["frame_index"] for p in track["frames"]} <= {0, 1, 2, 3}
        assert all(rle_to_mask(p["rle"]).shape == (96, 128) for p in track["frames"])
    if data["tracks"]:
        assert overlay_of(result).shape == (96, 128, 3)
