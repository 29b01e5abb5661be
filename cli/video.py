"""``track`` (raw SAM 3 on a video: every instance of phrases, tracked) and ``segment-video`` (the agent)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cli import inputs
from cli.common import check_llm_config, check_model, write_json
from cli.options import (
    add_agent_options,
    add_llm_options,
    add_model_options,
    add_video_agent_options,
    add_video_threshold_options,
    llm_config,
    positive_int,
)
from cli.progress import progress
from sam3_core.errors import InputError

logger = logging.getLogger("sam3_agent.cli")


def add_track(commands: argparse._SubParsersAction) -> None:
    track = commands.add_parser("track", help="raw SAM 3 on a video: detect and track every instance of phrases")
    track.add_argument("video", help="video file (mp4, webm, ...) or a folder of frames")
    track.add_argument("phrases", nargs="*", help="short noun phrases, e.g. 'red car' (or -p)")
    track.add_argument("-p", "--phrase", action="append", default=[], dest="phrase", help="a phrase (repeatable)")
    track.add_argument("--out", default="-", help="YouTube-VIS-style JSON output path ('-': stdout, the default)")
    track.add_argument("--overlay", metavar="MP4", help="also write an mp4 with the numbered masks")
    track.add_argument("--max-frames", type=positive_int, help="most frames to track per direction (default: all)")
    track.add_argument("--start-frame", type=int, default=0, help="frame to start from (default: %(default)s)")
    track.add_argument("--direction", choices=["forward", "backward", "both"], default="forward",
                       help="(default: %(default)s)")
    track.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_video_threshold_options(track)
    add_model_options(track, max_pixels=False)
    track.set_defaults(func=run_track)


def add_segment_video(commands: argparse._SubParsersAction) -> None:
    ask = commands.add_parser("segment-video", help="answer a query about a video with the agent (masklets)")
    ask.add_argument("video", help="video file (mp4, webm, ...) or a folder of frames")
    ask.add_argument("query", help='e.g. "the dog that jumps over the bench"')
    ask.add_argument("--out", required=True, help="output folder: result.json, trace.json, overlay.mp4")
    ask.add_argument("--overlay", action="store_true", help="also write overlay.mp4 with the chosen masklets")
    ask.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_video_threshold_options(ask)
    add_agent_options(ask, verification=False)
    add_video_agent_options(ask)
    add_llm_options(ask)
    add_model_options(ask, max_pixels=False)
    ask.set_defaults(func=run_segment_video)


def objects_on_frame(result) -> str:
    """Progress words for a tracked frame: how many objects are on it."""
    return f"{len(result)} objects"


def _frames_to_visit(num_frames: int, start: int, direction: str, max_frames: int | None) -> int:
    forward = num_frames - start if direction in ("forward", "both") else 0
    backward = start + 1 if direction == "backward" else (start if direction == "both" else 0)
    if max_frames is not None:
        forward, backward = min(forward, max_frames), min(backward, max_frames)
    return forward + backward


def run_track(args: argparse.Namespace) -> int:
    phrases = inputs.check_phrases(list(args.phrases) + list(args.phrase))
    if not phrases:
        raise InputError("no phrase given; name what to track, e.g. `track clip.mp4 -p dog`")
    video = inputs.check_video(args.video)
    inputs.check_writable_file(args.out)
    if args.overlay:
        inputs.check_writable_file(args.overlay)
    check_model(args.model)

    from sam3_core.video import VideoEngine, VideoOptions
    from sam3_core.video.outputs import VisJsonWriter, write_overlay_video

    options = VideoOptions(max_sessions=1, score_threshold=args.threshold, new_object_threshold=args.new_threshold)
    with VideoEngine.from_pretrained(args.model, device=args.device, dtype=args.dtype, options=options) as engine:
        session = engine.start_session(video)
        engine.add_text_prompts(session, phrases)
        source = engine.session_source(session)
        writer = VisJsonWriter(source, video_name=str(args.video))
        total = _frames_to_visit(source.num_frames, args.start_frame, args.direction, args.max_frames)
        stream = engine.propagate(session, args.start_frame, args.direction, args.max_frames)
        frames = 0
        for result in progress(stream, total=total, desc="tracking", unit="frame", enabled=not args.no_progress,
                               postfix=objects_on_frame):
            writer.add(result)
            frames += 1
        document = writer.document()
        write_json(document, args.out)
        if args.overlay:
            write_overlay_video(source, document, args.overlay)
        detection = engine.model.score_threshold_detection
        objects = len(document["annotations"])
        where = "stdout" if args.out == "-" else args.out
        logger.info("%d frames tracked, %d objects; JSON written to %s", frames, objects, where)
        if objects == 0:
            best = _best_on_frame(engine, args.model, source, args.start_frame, phrases)
            logger.warning("no object was tracked: no detection scored above the detection threshold %.2f (%s); "
                           "lower --threshold (and --new-threshold) to see weaker ones", detection, best)
        engine.close_session(session)
    return 0


def _best_on_frame(engine, model: str, source, index: int, phrases: list[str]) -> str:
    """The best detection score of ``phrases`` on frame ``index``, found by the image engine built on the
    video model's own modules (no weight copied), as a few words."""
    from sam3_core.engine import Sam3Engine
    from sam3_core.loading import image_models_from_video

    models = image_models_from_video(engine.model, model)
    with Sam3Engine(models.detector, models.processor, device=engine.device, dtype=engine.dtype) as images:
        results = images.segment(source.frame(index), phrases, score_threshold=0.0)
    scored = [(float(r.scores.max()), r.phrase) for r in results if len(r)]
    if not scored:
        return f"no candidate on frame {index}"
    score, phrase = max(scored)
    return f"best on frame {index}: {score:.2f} for {phrase!r}"


def _progress_engine_class():
    """A :class:`VideoEngine` whose every ``propagate`` shows progress (the video agent tracks each phrase it
    explores, and the chosen masklets to the end, through it)."""
    from sam3_core.video import VideoEngine

    class ProgressVideoEngine(VideoEngine):
        def propagate(self, session_id, start_frame=None, direction="forward", max_frames=None):
            stream = super().propagate(session_id, start_frame, direction, max_frames)
            source = self.session_source(session_id)
            total = _frames_to_visit(source.num_frames, start_frame or 0, direction, max_frames)
            return progress(stream, total=total, desc="tracking", unit="frame", postfix=objects_on_frame)

    return ProgressVideoEngine


def run_segment_video(args: argparse.Namespace) -> int:
    """The video agent on one video and query; writes result.json, trace.json and, asked, overlay.mp4."""
    from agent.settings import VIDEO_AGENT_DEFAULTS, VideoAgentSettings, VideoSettings

    query = inputs.check_query(args.query)
    video = inputs.check_video(args.video)
    inputs.check_writable_folder(args.out)
    llm = llm_config(args)
    from dataclasses import replace

    settings = VideoAgentSettings(
        agent=replace(VIDEO_AGENT_DEFAULTS, max_steps=args.max_steps),
        video=VideoSettings(max_frames=args.max_frames, keyframes=args.keyframes, refinement=not args.no_refine))
    check_llm_config(llm)
    check_model(args.model)

    from agent.answers import failure_documents
    from agent.video_agent import run_video_agent_sync
    from sam3_core.video import VideoEngine, VideoOptions, open_video
    from sam3_core.video.outputs import write_overlay_video

    options = VideoOptions(max_sessions=settings.agent.max_phrases + settings.video.max_refinements + 1,
                           score_threshold=args.threshold, new_object_threshold=args.new_threshold)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    engine_class = VideoEngine if args.no_progress else _progress_engine_class()
    with engine_class.from_pretrained(args.model, device=args.device, dtype=args.dtype, options=options) as engine:
        logger.info("running the video agent on %s (each phrase is tracked over the video)", video)
        try:
            answer = run_video_agent_sync(engine, llm, video, query, settings=settings)
        except Exception as exc:  # result.json and trace.json whatever the ending (the trace so far, if any)
            result, trace = failure_documents(query, exc)
            write_json(result, out / "result.json")
            write_json(trace, out / "trace.json")
            raise
    write_json(answer.to_json(), out / "result.json")
    write_json(answer.trace_json(), out / "trace.json")
    if args.overlay:
        source = open_video(video)
        try:
            write_overlay_video(source, answer.document, out / "overlay.mp4")
        finally:
            source.close()
    logger.info("%s: %s (masklets %s, %d model calls); written to %s", answer.query, answer.status,
                answer.masklet_ids, answer.usage.calls, out)
    return 0 if answer.ok else 3
