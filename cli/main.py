"""The ``sam3-agent`` command line.

Sub-commands:
  segment IMAGE QUERY --out DIR               the agent: an MLLM uses SAM 3 to answer the query
  segment-phrase IMAGE PHRASE [PHRASE ...]   raw SAM 3: every instance of each phrase, as JSON
  track VIDEO PHRASE [PHRASE ...]              raw SAM 3 on a video: every instance of each phrase, tracked
  segment-video VIDEO QUERY --out DIR         the agent on a video: an MLLM picks SAM 3 masklets for the query
  make-tiny-checkpoint DIR [--video]          a random tiny SAM 3 in the Hugging Face format
  eval {reasonseg,refcoco,omnilabel,score}    benchmark runs (resumable) and their scores
  serve / mcp / chat                          HTTP API, MCP server, chat page for people and other agents
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.eval import add_eval_commands
from cli.finetune import add_finetune_command
from cli.serve import add_serving_commands
from sam3_core.errors import RunFailed, Sam3AgentError

logger = logging.getLogger("sam3_agent.cli")


def _segment_phrase(args: argparse.Namespace) -> int:
    from sam3_core.engine import EngineOptions, Sam3Engine

    options = EngineOptions(max_pixels=args.max_pixels)
    with Sam3Engine.from_pretrained(args.model, device=args.device, dtype=args.dtype, options=options,
                                    with_tracker=False) as engine:
        image = engine.load(args.image)
        results = engine.segment(image, args.phrases, exemplar_boxes=args.box or None,
                                 score_threshold=args.threshold, mask_threshold=args.mask_threshold)
    document = {
        "image": str(args.image),
        "image_size": {"height": image.height, "width": image.width},
        "model": str(args.model),
        "score_threshold": args.threshold,
        "results": [result.to_json() for result in results],
    }
    _write_json(document, args.out)
    if args.overlay:
        _write_overlay(image.pixels, results, args.overlay)
    found = ", ".join(f"{r.phrase}: {len(r)}" for r in results)
    logger.info("instances found (%s); JSON written to %s", found, args.out)
    return 0


def _segment(args: argparse.Namespace) -> int:
    """The agent on one image and query; writes mask.png, overlay.png, result.json, trace.json."""
    import numpy as np
    from PIL import Image

    from agent.llm import LLMConfig
    from agent.runner import run_agent_sync
    from agent.settings import AgentSettings
    from sam3_core.drawing import render_final
    from sam3_core.engine import EngineOptions, Sam3Engine

    llm = LLMConfig(base_url=args.llm_url, model=args.llm_model, tool_protocol=args.tool_protocol,
                    timeout_s=args.llm_timeout, max_retries=args.llm_retries)
    settings = AgentSettings(max_steps=args.max_steps, score_threshold=args.threshold,
                             verification=not args.no_verify)
    with Sam3Engine.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                    options=EngineOptions(max_pixels=args.max_pixels), with_tracker=False) as engine:
        image = engine.load(args.image)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        try:
            answer = run_agent_sync(engine, llm, image, args.query, settings=settings)
        except RunFailed as exc:
            failed = getattr(exc, "answer", None)
            if failed is not None:  # keep the trace of what happened before the LLM gave up
                _write_json(failed.trace_json(), str(out / "trace.json"))
            raise
    result = {"image": str(args.image), "image_size": {"height": image.height, "width": image.width},
              **answer.to_json(), "rles": _rles(answer.masks)}
    _write_json(result, str(out / "result.json"))
    _write_json(answer.trace_json(), str(out / "trace.json"))
    Image.fromarray(answer.mask.astype(np.uint8) * 255).save(out / "mask.png")
    render_final(image.pixels, answer.masks, answer.mask_ids).save(out / "overlay.png")
    logger.info("%s: %s (masks %s, %d model calls); written to %s", answer.query, answer.status, answer.mask_ids,
                answer.usage.calls, out)
    return 0 if answer.ok else 3


def _rles(masks) -> list[dict]:
    from sam3_core.postprocess import masks_to_rle

    return masks_to_rle(masks)


def _write_json(document: dict, out: str) -> None:
    text = json.dumps(document, indent=1)
    if out == "-":
        sys.stdout.write(text + "\n")
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)


def _write_overlay(pixels, results, path: str) -> None:
    import numpy as np

    from sam3_core.drawing import render_masks

    masks = [m for r in results for m in r.masks]
    stack = np.stack(masks) if masks else np.zeros((0, *pixels.shape[:2]), dtype=bool)
    render_masks(pixels, stack, list(range(1, len(masks) + 1))).save(path)


def _track(args: argparse.Namespace) -> int:
    from sam3_core.video import VideoEngine, VideoOptions
    from sam3_core.video.outputs import VisJsonWriter, write_overlay_video

    options = VideoOptions(max_sessions=1, score_threshold=args.threshold, new_object_threshold=args.new_threshold)
    with VideoEngine.from_pretrained(args.model, device=args.device, dtype=args.dtype, options=options) as engine:
        session = engine.start_session(args.video)
        engine.add_text_prompts(session, args.phrases)
        source = engine.session_source(session)
        writer = VisJsonWriter(source, video_name=str(args.video))
        frames = 0
        for result in engine.propagate(session, args.start_frame, args.direction, args.max_frames):
            writer.add(result)
            frames += 1
        document = writer.document()
        _write_json(document, args.out)
        if args.overlay:
            write_overlay_video(source, document, args.overlay)
        engine.close_session(session)
    logger.info("%d frames tracked, %d objects; JSON written to %s", frames, len(document["annotations"]), args.out)
    return 0


def _segment_video(args: argparse.Namespace) -> int:
    """The video agent on one video and query; writes result.json, trace.json and, asked, overlay.mp4."""
    from agent.llm import LLMConfig
    from agent.settings import AgentSettings, VideoAgentSettings, VideoSettings
    from agent.video_agent import run_video_agent_sync
    from sam3_core.video import VideoEngine, VideoOptions, open_video
    from sam3_core.video.outputs import write_overlay_video

    llm = LLMConfig(base_url=args.llm_url, model=args.llm_model, tool_protocol=args.tool_protocol,
                    timeout_s=args.llm_timeout, max_retries=args.llm_retries)
    settings = VideoAgentSettings(
        agent=AgentSettings(max_steps=args.max_steps, score_threshold=0.0, verification=False),
        video=VideoSettings(max_frames=args.max_frames, keyframes=args.keyframes, refinement=not args.no_refine))
    options = VideoOptions(max_sessions=settings.agent.max_phrases + settings.video.max_refinements + 1,
                           score_threshold=args.threshold, new_object_threshold=args.new_threshold)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with VideoEngine.from_pretrained(args.model, device=args.device, dtype=args.dtype, options=options) as engine:
        try:
            answer = run_video_agent_sync(engine, llm, args.video, args.query, settings=settings)
        except RunFailed as exc:
            failed = getattr(exc, "answer", None)
            if failed is not None:  # keep the trace of what happened before the LLM gave up
                _write_json(failed.trace_json(), str(out / "trace.json"))
            raise
    _write_json(answer.to_json(), str(out / "result.json"))
    _write_json(answer.trace_json(), str(out / "trace.json"))
    if args.overlay:
        source = open_video(args.video)
        try:
            write_overlay_video(source, answer.document, out / "overlay.mp4")
        finally:
            source.close()
    logger.info("%s: %s (masklets %s, %d model calls); written to %s", answer.query, answer.status,
                answer.masklet_ids, answer.usage.calls, out)
    return 0 if answer.ok else 3


def _make_tiny_checkpoint(args: argparse.Namespace) -> int:
    from sam3_core.tiny import MID_SPEC, TinySpec, write_tiny_checkpoint

    spec = MID_SPEC if args.size == "mid" else TinySpec()
    folder = write_tiny_checkpoint(args.dir, spec, video=args.video, seed=args.seed)
    logger.info("random %s SAM 3 checkpoint written to %s", args.size, folder)
    return 0


def _add_device_args(command: argparse.ArgumentParser) -> None:
    command.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    command.add_argument("--dtype", help="bf16, fp16 or fp32 (default: bf16 on GPU, fp32 on CPU)")
    command.add_argument("--max-pixels", type=int, default=64_000_000, help="refuse larger images")


def _add_segment_video(commands: argparse._SubParsersAction) -> None:
    """The ``segment-video`` command's parser (the video agent)."""
    video_ask = commands.add_parser("segment-video", help="answer a query about a video with the agent (masklets)")
    video_ask.add_argument("video", help="video file (mp4, webm, ...) or a folder of frames")
    video_ask.add_argument("query", help='e.g. "the dog that jumps over the bench"')
    video_ask.add_argument("--model", default="facebook/sam3", help="SAM 3 hub id or local checkpoint folder")
    video_ask.add_argument("--llm-url", default="http://localhost:8000/v1", help="OpenAI-compatible endpoint")
    video_ask.add_argument("--llm-model", default="", help="served model name (default: the endpoint's first model)")
    video_ask.add_argument("--tool-protocol", choices=["text", "native"], default="text",
                           help="text: calls as JSON in <tool_call> tags (default); native: function calling")
    video_ask.add_argument("--llm-timeout", type=float, default=120.0, help="seconds per LLM request")
    video_ask.add_argument("--llm-retries", type=int, default=4, help="retries on 429/5xx/timeouts, with backoff")
    video_ask.add_argument("--max-steps", type=int, default=12, help="most model replies per query")
    video_ask.add_argument("--max-frames", type=int, help="frames tracked per phrase while exploring (default: all)")
    video_ask.add_argument("--keyframes", type=int, default=4, help="keyframes shown to the model")
    video_ask.add_argument("--no-refine", action="store_true", help="do not offer refine_masklet")
    video_ask.add_argument("--threshold", type=float, help="detection score threshold (default: the checkpoint's)")
    video_ask.add_argument("--new-threshold", type=float, help="score a detection needs to start a new object")
    video_ask.add_argument("--out", required=True, help="output folder: result.json, trace.json, overlay.mp4")
    video_ask.add_argument("--overlay", action="store_true", help="also write overlay.mp4 with the chosen masklets")
    video_ask.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    video_ask.add_argument("--dtype", help="bf16, fp16 or fp32 (default: bf16 on GPU, fp32 on CPU)")
    video_ask.set_defaults(func=_segment_video)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam3-agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    ask = commands.add_parser("segment", help="answer a reasoning-segmentation query with the agent")
    ask.add_argument("image", help="image file")
    ask.add_argument("query", help='e.g. "the cup the woman is about to drink from"')
    ask.add_argument("--model", default="facebook/sam3", help="SAM 3 hub id or local checkpoint folder")
    ask.add_argument("--llm-url", default="http://localhost:8000/v1", help="OpenAI-compatible endpoint (vLLM)")
    ask.add_argument("--llm-model", default="", help="served model name (default: the endpoint's first model)")
    ask.add_argument("--tool-protocol", choices=["text", "native"], default="text",
                     help="text: calls as JSON in <tool_call> tags, works on any endpoint (default); native: the "
                          "endpoint's function calling (vLLM needs --enable-auto-tool-choice --tool-call-parser)")
    ask.add_argument("--llm-timeout", type=float, default=120.0, help="seconds per LLM request")
    ask.add_argument("--llm-retries", type=int, default=4, help="retries on 429/5xx/timeouts, with backoff")
    ask.add_argument("--max-steps", type=int, default=12, help="most model replies per query")
    ask.add_argument("--no-verify", action="store_true", help="do not offer the per-mask verification tool")
    ask.add_argument("--threshold", type=float, default=0.5, help="SAM 3 instance score threshold")
    ask.add_argument("--out", required=True, help="output folder: mask.png, overlay.png, result.json, trace.json")
    _add_device_args(ask)
    ask.set_defaults(func=_segment)

    seg = commands.add_parser("segment-phrase", help="raw SAM 3 on an image for one or more noun phrases")
    seg.add_argument("image", help="image file")
    seg.add_argument("phrases", nargs="*", help="short noun phrases, e.g. 'red car'")
    seg.add_argument("--model", default="facebook/sam3", help="hub id or local checkpoint folder")
    seg.add_argument("--out", default="-", help="JSON output path ('-' for stdout)")
    seg.add_argument("--overlay", help="also write a PNG with the numbered masks")
    seg.add_argument("--box", type=float, nargs=4, action="append", metavar=("X1", "Y1", "X2", "Y2"),
                     help="a positive exemplar box in pixels (repeatable); alone it prompts by example")
    seg.add_argument("--threshold", type=float, default=0.5, help="instance score threshold")
    seg.add_argument("--mask-threshold", type=float, default=0.5, help="mask probability threshold")
    _add_device_args(seg)
    seg.set_defaults(func=_segment_phrase)

    track = commands.add_parser("track", help="raw SAM 3 on a video: detect and track every instance of phrases")
    track.add_argument("video", help="video file (mp4, webm, ...) or a folder of frames")
    track.add_argument("phrases", nargs="+", help="short noun phrases, e.g. 'red car'")
    track.add_argument("--model", default="facebook/sam3", help="hub id or local checkpoint folder")
    track.add_argument("--out", default="-", help="YouTube-VIS-style JSON output path ('-' for stdout)")
    track.add_argument("--overlay", help="also write an mp4 with the numbered masks")
    track.add_argument("--max-frames", type=int, help="most frames to track per direction")
    track.add_argument("--start-frame", type=int, default=0, help="frame to start from")
    track.add_argument("--direction", choices=["forward", "backward", "both"], default="forward")
    track.add_argument("--threshold", type=float, help="detection score threshold (default: the checkpoint's)")
    track.add_argument("--new-threshold", type=float, help="score a detection needs to start a new object")
    track.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    track.add_argument("--dtype", help="bf16, fp16 or fp32 (default: bf16 on GPU, fp32 on CPU)")
    track.set_defaults(func=_track)

    _add_segment_video(commands)

    tiny = commands.add_parser("make-tiny-checkpoint", help="write a random small SAM 3 (no download)")
    tiny.add_argument("dir", help="output folder")
    tiny.add_argument("--video", action="store_true", help="also write the video processor files")
    tiny.add_argument("--size", choices=["tiny", "mid"], default="tiny", help="tiny: tests; mid: CPU benchmarks")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_make_tiny_checkpoint)

    add_eval_commands(commands)
    add_serving_commands(commands)
    add_finetune_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sam3-agent`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except Sam3AgentError as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
