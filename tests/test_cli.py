"""The ``sam3-agent`` command line, run in-process (``cli.main.main(argv)``) on the tiny checkpoint.

Only the ``--help`` import check needs a fresh interpreter (it asserts what a cold start imports).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.testing import Reply, ScriptedLLM
from cli.main import build_parser, main

COMMANDS = [[], ["segment"], ["segment-phrase"], ["track"], ["segment-video"], ["make-tiny-checkpoint"],
            ["eval"], ["eval", "reasonseg"], ["eval", "refcoco"], ["eval", "omnilabel"], ["eval", "score"],
            ["serve"], ["mcp"], ["chat"]]


def save_image(path: Path, seed: int = 0, size: tuple[int, int] = (60, 80)) -> Path:
    Image.fromarray((np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_help_of_every_command_imports_no_heavy_library():
    script = (
        "import sys, contextlib, io\n"
        "from cli.main import main\n"
        f"for argv in {COMMANDS!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main([*argv, '--help'])\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code == 0, (argv, exc.code)\n"
        "    assert 'usage: sam3-agent' in out.getvalue(), argv\n"
        "heavy = [m for m in ('torch', 'transformers', 'fastapi', 'starlette', 'uvicorn', 'langgraph', 'mcp',\n"
        "                     'openai') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HEAVY []" in done.stdout, done.stdout


def test_shared_options_have_one_spelling_and_show_their_defaults(capsys):
    parser = build_parser()
    for argv in (["segment", "a.jpg", "q", "--out", "o"], ["segment-phrase", "a.jpg", "-p", "x"],
                 ["eval", "reasonseg", "--data", "d", "--out", "o"], ["serve"], ["mcp"]):
        args = parser.parse_args(argv)
        assert args.threshold == 0.5 and args.model == "facebook/sam3", argv
    # Old spellings still work, hidden from --help.
    old = parser.parse_args(["serve", "--score-threshold", "0.3", "--no-verification"])
    assert old.threshold == 0.3 and old.no_verify
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # help lines wrap with the terminal width
    assert "--threshold T" in text and "(default: 0.5)" in text and "(default: facebook/sam3)" in text
    assert "--score-threshold" not in text and "--no-verification" not in text


@pytest.mark.parametrize("value", ["1.5", "-0.1", "abc"])
def test_thresholds_outside_0_1_are_refused_by_the_parser(value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["segment-phrase", "a.jpg", "-p", "dog", "--threshold", value])
    assert exc.value.code == 2
    assert "--threshold" in capsys.readouterr().err


def test_make_tiny_checkpoint_serves_images_and_video(tmp_path, caplog):
    ckpt = tmp_path / "ckpt"
    assert main(["make-tiny-checkpoint", str(ckpt)]) == 0
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "tokenizer.json").is_file()
    image = save_image(tmp_path / "img.png")
    out, overlay = tmp_path / "out.json", tmp_path / "overlay.png"
    # The old form: one image, then phrases.
    assert main(["segment-phrase", str(image), "cat", "red car", "--model", str(ckpt), "--out", str(out),
                 "--overlay", str(overlay), "--threshold", "0.0"]) == 0
    document = json.loads(out.read_text())
    assert document["image_size"] == {"height": 60, "width": 80}
    assert [r["phrase"] for r in document["results"]] == ["cat", "red car"]
    instance = document["results"][0]["instances"][0]
    assert set(instance) == {"score", "box_xyxy", "rle"} and instance["rle"]["size"] == [60, 80]
    assert Image.open(overlay).size == (80, 60)
    # The same checkpoint tracks on a video (a folder of frames).
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        save_image(frames / f"{index:03d}.png", seed=index)
    track = tmp_path / "track.json"
    assert main(["track", str(frames), "-p", "cat", "--model", str(ckpt), "--out", str(track), "--threshold", "0.0",
                 "--new-threshold", "0.0", "--no-progress"]) == 0
    vis = json.loads(track.read_text())
    assert len(vis["videos"][0]["file_names"]) == 3 and vis["annotations"]
    assert "3 frames tracked" in caplog.text


def test_nothing_above_the_threshold_says_so_with_the_best_score(tmp_path, tiny_checkpoint, caplog, capsys):
    image = save_image(tmp_path / "img.png")
    assert main(["segment-phrase", str(image), "-p", "dog", "--model", tiny_checkpoint, "--threshold", "1.0"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert all(len(r["instances"]) == 0 for r in document["results"])
    message = next(r.getMessage() for r in caplog.records if "no instance scored above 1.0" in r.getMessage())
    best = float(message.split("best: ")[1].split(" ")[0])
    assert 0.0 < best <= 1.0 and "for 'dog'" in message and "lower --threshold" in message


def test_track_with_nothing_found_says_why(tmp_path, tiny_checkpoint, caplog):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(2):
        save_image(frames / f"{index}.png", seed=index)
    assert main(["track", str(frames), "dog", "--model", tiny_checkpoint, "--out", str(tmp_path / "t.json"),
                 "--threshold", "1.0", "--no-progress"]) == 0
    message = next(r.getMessage() for r in caplog.records if "no object was tracked" in r.getMessage())
    best = float(message.split("best on frame 0: ")[1].split(" ")[0])
    assert 0.0 < best <= 1.0 and "for 'dog'" in message and "lower --threshold" in message


def test_segment_runs_the_agent_against_an_llm_endpoint(tmp_path, tiny_checkpoint):
    image = save_image(tmp_path / "img.png", seed=3)
    segment = json.dumps({"name": "segment_phrase", "arguments": {"text_prompt": "cup"}})
    select = json.dumps({"name": "select_masks_and_return", "arguments": {"mask_ids": [1]}})
    out = tmp_path / "run"
    with ScriptedLLM([Reply.text(f"<tool_call>{segment}</tool_call>"),
                      Reply.text(f"<tool_call>{select}</tool_call>")]) as server:
        assert main(["segment", str(image), "the cup on the left", "--model", tiny_checkpoint, "--llm-url",
                     server.base_url, "--llm-model", server.model, "--threshold", "0.0", "--out", str(out),
                     "--no-verify"]) == 0
        assert len([r for r in server.requests if r.get("messages")]) == 2
    answer = json.loads((out / "result.json").read_text())
    assert answer["status"] == "answered" and answer["mask_ids"] == [1]
    assert answer["rles"][0]["size"] == [60, 80]
    assert np.asarray(Image.open(out / "mask.png")).max() == 255
    assert Image.open(out / "overlay.png").size == (80, 60)
    assert json.loads((out / "trace.json").read_text())["status"] == "answered"


def test_an_unreachable_llm_is_reported_once_with_the_url_before_loading(tmp_path, caplog):
    image = save_image(tmp_path / "img.png")
    # The model folder does not exist: the LLM check must come first and stop the run.
    assert main(["segment", str(image), "the cat", "--out", str(tmp_path / "run"), "--model",
                 str(tmp_path / "no-model"), "--llm-url", "http://127.0.0.1:9/v1", "--llm-retries", "3"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
    assert len(errors) == 1 and "http://127.0.0.1:9/v1/models" in errors[0], errors
    assert "--llm-url" in errors[0]


def test_default_logging_shows_the_summary_only_and_v_shows_more(tmp_path, tiny_checkpoint, caplog):
    import logging

    image = save_image(tmp_path / "img.png")
    argv = ["segment-phrase", str(image), "-p", "cat", "--model", tiny_checkpoint, "--threshold", "0.0",
            "--out", str(tmp_path / "o.json")]
    before = logging.getLogger("sam3_core").level
    with caplog.at_level(logging.DEBUG):
        assert main(argv) == 0
        quiet = [(r.name, r.levelno) for r in caplog.records]
        caplog.clear()
        assert main(["-v", *argv]) == 0
        verbose = [(r.name, r.levelno) for r in caplog.records]
    assert ("sam3_agent.cli", logging.INFO) in quiet  # "<image>: cat: N -> o.json"
    assert not [n for n, level in quiet if not n.startswith("sam3_agent") and level < logging.WARNING]
    assert [n for n, level in verbose if n.startswith("sam3_core") and level == logging.INFO]
    assert logging.getLogger("sam3_core").level == before  # main() restores what it changed


def test_segment_video_in_process_with_progress_lines(tmp_path, tiny_checkpoint, caplog):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(4):
        save_image(frames / f"{index}.png", seed=index)
    segment = json.dumps({"name": "segment_phrase", "arguments": {"text_prompt": "disc"}})
    select = json.dumps({"name": "select_masklets_and_return", "arguments": {"masklet_ids": [1]}})
    out = tmp_path / "run"
    with ScriptedLLM([Reply.text(f"<tool_call>{segment}</tool_call>"),
                      Reply.text(f"<tool_call>{select}</tool_call>")]) as server:
        assert main(["segment-video", str(frames), "the disc", "--model", tiny_checkpoint, "--llm-url",
                     server.base_url, "--llm-model", server.model, "--threshold", "0.0", "--new-threshold", "0.0",
                     "--out", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())["masklet_ids"] == [1]
    # stderr is not a terminal under pytest: progress comes as plain lines, one per tracking pass at least.
    assert any(r.getMessage().startswith("tracking: ") and r.getMessage().endswith("done") for r in caplog.records)
