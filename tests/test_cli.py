"""The ``sam3-agent`` command line, run as a real subprocess on a tiny checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_make_checkpoint_then_segment_phrase(tmp_path):
    ckpt = tmp_path / "ckpt"
    done = run_cli("make-tiny-checkpoint", str(ckpt), "--video")
    assert done.returncode == 0, done.stderr
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "tokenizer.json").is_file()
    assert (ckpt / "processor_config.json").is_file()

    image = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)).save(image)
    out, overlay = tmp_path / "out.json", tmp_path / "overlay.png"
    done = run_cli("segment-phrase", str(image), "cat", "red car", "--model", str(ckpt), "--out", str(out),
                   "--overlay", str(overlay), "--threshold", "0.0")
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert document["image_size"] == {"height": 60, "width": 80}
    assert [r["phrase"] for r in document["results"]] == ["cat", "red car"]
    instance = document["results"][0]["instances"][0]
    assert set(instance) == {"score", "box_xyxy", "rle"} and instance["rle"]["size"] == [60, 80]
    assert Image.open(overlay).size == (80, 60)


def test_bad_input_exits_with_a_message(tmp_path):
    done = run_cli("segment-phrase", str(tmp_path / "missing.jpg"), "cat", "--model", str(tmp_path))
    assert done.returncode == 2
    assert "cannot load a SAM 3 checkpoint" in done.stderr or "not found" in done.stderr


def test_segment_runs_the_agent_against_an_llm_endpoint(tmp_path, tiny_checkpoint):
    import json as _json

    from agent.testing import Reply, ScriptedLLM

    image = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(3).random((60, 80, 3)) * 255).astype(np.uint8)).save(image)
    segment = _json.dumps({"name": "segment_phrase", "arguments": {"text_prompt": "cup"}})
    select = _json.dumps({"name": "select_masks_and_return", "arguments": {"mask_ids": [1]}})
    out = tmp_path / "run"
    with ScriptedLLM([Reply.text(f"<tool_call>{segment}</tool_call>"),
                      Reply.text(f"<tool_call>{select}</tool_call>")]) as server:
        done = run_cli("segment", str(image), "the cup on the left", "--model", tiny_checkpoint, "--llm-url",
                       server.base_url, "--llm-model", server.model, "--threshold", "0.2", "--out", str(out),
                       "--no-verify")
        assert done.returncode == 0, done.stderr[-3000:]
        assert len(server.requests) == 2
    answer = _json.loads((out / "result.json").read_text())
    assert answer["status"] == "answered" and answer["mask_ids"] == [1]
    assert answer["rles"][0]["size"] == [60, 80]
    assert np.asarray(Image.open(out / "mask.png")).max() == 255
    assert Image.open(out / "overlay.png").size == (80, 60)
    trace = _json.loads((out / "trace.json").read_text())
    assert trace["status"] == "answered"


def test_segment_reports_an_unreachable_llm(tmp_path, tiny_checkpoint):
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    done = run_cli("segment", str(image), "the cat", "--out", str(tmp_path / "run"), "--model", tiny_checkpoint,
                   "--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m", "--llm-timeout", "2",
                   "--llm-retries", "1")
    assert done.returncode == 2
    assert "127.0.0.1:9" in done.stderr
    trace = json.loads((tmp_path / "run" / "trace.json").read_text())
    assert trace["status"] == "failed"
