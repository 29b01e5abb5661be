"""``VideoEngine``: SAM 3 on videos -- phrases (detector + tracker) and clicks/boxes (tracker).

Typical use::

    engine = VideoEngine.from_pretrained("facebook/sam3")
    sid = engine.start_session("street.mp4")                 # or a folder of frames
    engine.add_text_prompts(sid, ["person", "dog"])          # every phrase shares each frame's encoding
    for frame in engine.propagate(sid, direction="both"):    # streamed, one FrameResult per frame
        ...
    update = engine.add_points(sid, frame_index=40, points=[[310, 200]], object_id=3)   # refine object 3
    engine.close_session(sid)

One ``Sam3VideoModel`` serves everything: its detector for phrases, its tracker (a
``Sam3TrackerVideoModel``) for propagation and clicks, the ViT encoding each frame once for both. Model
work is serialised by a lock; ``propagate`` takes it per frame, so several sessions can be consumed
in turn. Memory stays bounded: at most ``max_sessions`` sessions, idle ones closed, frames decoded on
demand, and each session's per-frame tracker state trimmed as propagation moves on
(:mod:`sam3_core.video.retention`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import PromptError, UsageError, VideoError
from ..loading import (
    DEFAULT_MODEL_ID,
    _check_loaded,
    _translate_load_errors,
    hub_access,
    resolve_device,
    resolve_dtype,
    resolve_model_id,
)
from ..phrases import clean_phrases
from . import batched, memory_fill, pointers
from .cleanup import suppress_duplicates
from .frames import FrameSource, check_index, open_video
from .options import VideoOptions, apply_options
from .pixels import PixelFrames
from .prompts import add_phrase, check_box, check_points, to_model_pixels
from .results import FrameResult, RawFrame, build_frame_result
from .retention import HeldTensors, RetentionPolicy, trim_session
from .session import SessionRegistry, VideoSession
from .steps import BOX_LABELS, apply_clicks, detect_and_track, protect_clicked, register_click_object, track_only

logger = logging.getLogger(__name__)

DIRECTIONS = ("forward", "backward", "both")


@dataclass
class ObjectUpdate:
    """What :meth:`VideoEngine.add_points` / :meth:`VideoEngine.add_box` return.

    Attributes:
        object_id: the prompted object's id (new when no ``object_id`` was given).
        frame: every object on the prompted frame, the prompted one included.
    """

    object_id: int
    frame: FrameResult


@dataclass(frozen=True)
class SessionInfo:
    """A snapshot of one session: video size, phrases, objects and the tensors it holds."""

    session_id: str
    num_frames: int
    frame_size: tuple[int, int]
    phrases: list[str]
    object_ids: list[int]
    held: HeldTensors


class VideoEngine:
    """SAM 3 video segmentation and tracking on one device. Build it with :meth:`from_pretrained`."""

    def __init__(self, model, processor, *, device: torch.device, dtype: torch.dtype,
                 options: VideoOptions | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        options = options or VideoOptions()
        self.model, self.processor = model, processor
        self.device, self.dtype, self.options = device, dtype, options
        self.settings = apply_options(model, options)
        pointers.install(model.tracker_model)  # trackers as narrow as their memory (the demo model's)
        if options.batch_objects:
            batched.install(model.tracker_model, options.max_objects_per_pass)
        else:
            batched.uninstall(model.tracker_model)
        # Holes / specks up to this area (low-res pixels) are cleaned before memory encoding; 0: never.
        self._memory_clean_area = max(self.settings.fill_hole_area, 0) if options.fill_holes_in_memory else 0
        memory_fill.install(model.tracker_model, self._memory_clean_area, low_res_side=int(model.low_res_mask_size))
        offload = device.type != "cpu" if options.offload_to_cpu is None else options.offload_to_cpu
        self.policy = RetentionPolicy.for_tracker(
            model.tracker_model.config, self.settings.hotstart_delay,
            offload_device=torch.device("cpu") if offload and device.type != "cpu" else None)
        size = processor.video_processor.size
        self.input_size = (int(size["height"]), int(size["width"]))
        self._sessions = SessionRegistry(options.max_sessions, options.idle_timeout_s, clock)
        self._lock = threading.RLock()

    @classmethod
    def from_pretrained(cls, model_id_or_path: str = DEFAULT_MODEL_ID, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, *, options: VideoOptions | None = None,
                        token: str | None = None) -> VideoEngine:
        """Load the ``sam3_video`` checkpoint (hub id or folder) the image engine uses.

        Args:
            device: ``None`` picks CUDA when available, else CPU. dtype: ``None``: bf16 on GPU, fp32 on CPU.
            options: limits and thresholds (:class:`VideoOptions`).
            token: a Hugging Face token, if not set by ``hf auth login`` or ``HF_TOKEN``.

        Raises:
            CheckpointError: the checkpoint cannot be loaded or lacks some video weights.
        """
        from transformers import Sam3VideoModel, Sam3VideoProcessor

        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        model_id = resolve_model_id(str(model_id_or_path))
        common = {"token": token} if token else {}
        common.update(hub_access(model_id, token))  # fail in seconds when the hub cannot be reached
        with _translate_load_errors(model_id):
            processor = Sam3VideoProcessor.from_pretrained(model_id, **common)
            model, info = Sam3VideoModel.from_pretrained(model_id, output_loading_info=True, **common)
        _check_loaded("Sam3VideoModel", model_id, info)
        model.to(device=device, dtype=dtype).eval()
        logger.info("loaded video model %s on %s in %s", model_id, device, dtype)
        return cls(model, processor, device=device, dtype=dtype, options=options)

    # -- sessions ----------------------------------------------------------------------------------

    def start_session(self, video: str | Path | np.ndarray | Sequence[np.ndarray] | FrameSource) -> str:
        """Open ``video`` (mp4/webm/... file, folder of frames, ``(T, H, W, 3)`` array); returns a session id.

        Raises:
            VideoError: the video cannot be read or has no frames.
            UsageError: ``max_sessions`` sessions are already open.
        """
        from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

        source = open_video(video, self.options.decode_cache_frames)
        with self._lock:
            pixels = PixelFrames(source, self.processor.video_processor, self.device, self.dtype)
            state = Sam3VideoInferenceSession(video_height=source.height, video_width=source.width,
                                              inference_device=self.device, inference_state_device=self.device,
                                              video_storage_device=self.device, dtype=self.dtype)
            state.processed_frames = pixels  # frames on demand instead of the whole preprocessed video
            state.obj_with_new_inputs = []
            session = VideoSession(self._sessions.new_id(), source, pixels, state, self._sessions.now())
            self._sessions.add(session)
        logger.debug("video session %s: %s (%d frames, %dx%d)", session.session_id, source.name, source.num_frames,
                    source.width, source.height)
        return session.session_id

    def close_session(self, session_id: str) -> None:
        """Close a session and free its state; :class:`VideoError` if it is not open."""
        with self._lock:
            self._sessions.remove(session_id)

    def session_ids(self) -> list[str]:
        """Ids of the open sessions (idle ones past the timeout are closed first)."""
        with self._lock:
            return self._sessions.ids()

    def session_source(self, session_id: str) -> FrameSource:
        """The session's decoded video (to render overlays or read frames); closed with the session."""
        with self._lock:
            return self._sessions.get(session_id).source

    def session_info(self, session_id: str) -> SessionInfo:
        """Size, phrases, objects and held tensors of a session."""
        with self._lock:
            session = self._sessions.get(session_id)
            return SessionInfo(session_id, session.source.num_frames, session.frame_size,
                               list(session.phrases.values()), session.object_ids(), session.held())

    # -- prompts -----------------------------------------------------------------------------------

    def add_text_prompts(self, session_id: str, phrases: str | Sequence[str]) -> list[int]:
        """Track every instance of each phrase from now on; returns the phrases' prompt ids.

        Detection happens during :meth:`propagate`. All phrases of a session share each frame's encoding.
        """
        texts = clean_phrases(phrases)
        with self._lock:
            session = self._sessions.get(session_id)
            return [add_phrase(session.state, self.processor.tokenizer, text) for text in texts]

    def add_points(self, session_id: str, frame_index: int, points: Sequence[Sequence[float]],
                   labels: Sequence[int] | None = None, object_id: int | None = None) -> ObjectUpdate:
        """Clicks on one frame: refine ``object_id``, or start a new object when it is ``None``.

        Args:
            points: pixel ``(x, y)`` clicks in the video's frame. labels: 1 on the object, 0 background
                (default all 1). Clicks on a frame add to the object's earlier clicks on that frame.
        """
        with self._lock:
            session = self._sessions.get(session_id)
            index = check_index(frame_index, session.source.num_frames, session.source.name)
            coords, values = check_points(points, labels, session.frame_size)
            return self._click(session, index, object_id, coords, values, replace=False)

    def add_box(self, session_id: str, frame_index: int, box: Sequence[float],
                object_id: int | None = None) -> ObjectUpdate:
        """A pixel ``x1, y1, x2, y2`` box on one frame: a new object, or replaces ``object_id``'s prompts there."""
        with self._lock:
            session = self._sessions.get(session_id)
            index = check_index(frame_index, session.source.num_frames, session.source.name)
            corners = check_box(box, session.frame_size)
            return self._click(session, index, object_id, corners, np.array(BOX_LABELS), replace=True)

    def remove_object(self, session_id: str, object_id: int) -> None:
        """Stop tracking ``object_id`` and drop it from later results.

        A phrase's detector may find the same thing again on a later frame, as a new object.
        """
        with self._lock:
            session = self._sessions.get(session_id)
            self._check_object(session, object_id)
            session.state.remove_object(object_id, strict=True)
            session.hidden.add(object_id)
            session.pinned.discard(object_id)

    def _check_object(self, session: VideoSession, object_id: object) -> int:
        if isinstance(object_id, bool) or not isinstance(object_id, (int, np.integer)) or \
                int(object_id) not in session.object_ids():
            raise VideoError(f"unknown object {object_id!r} in video session {session.session_id}; "
                             f"its objects are {session.object_ids()}")
        return int(object_id)

    def _click(self, session: VideoSession, index: int, object_id: int | None, coords: np.ndarray,
               labels: np.ndarray, *, replace: bool) -> ObjectUpdate:
        state = session.state
        if object_id is None:
            object_id = state.max_obj_id + 1
            register_click_object(self.model, state, object_id, index)
        else:
            object_id = self._check_object(session, object_id)
        session.pinned.add(object_id)
        model_coords = to_model_pixels(coords, session.frame_size, self.input_size)
        raw = apply_clicks(self.model, state, index, object_id, model_coords, torch.as_tensor(labels), replace)
        return ObjectUpdate(object_id, self._finish(session, raw))

    # -- propagation -------------------------------------------------------------------------------

    def propagate(self, session_id: str, start_frame: int | None = None, direction: str = "forward",
                  max_frames: int | None = None) -> Iterator[FrameResult]:
        """Stream results frame by frame from ``start_frame``.

        Args:
            start_frame: first frame; default 0 for sessions with phrases, else the earliest prompted frame.
            direction: ``"forward"``, ``"backward"`` or ``"both"`` (forward, then backward from the frame
                before ``start_frame``).
            max_frames: most frames per direction, ``start_frame`` included (default: to the video's end).

        Returns:
            A generator of :class:`FrameResult` in processing order. With phrases, results trail the model
            by ``hotstart_delay`` frames (see :class:`VideoOptions`). Arguments are checked at the call.

        Raises:
            VideoError: unknown session, or ``start_frame`` out of range.
            PromptError: the session has neither phrases nor objects.
        """
        if direction not in DIRECTIONS:
            raise UsageError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                       or max_frames < 1):
            raise UsageError(f"max_frames must be a positive integer or None, got {max_frames!r}")
        with self._lock:
            session = self._sessions.get(session_id)
            total = session.source.num_frames
            if not session.state.prompts and not session.object_ids():
                raise PromptError("nothing to track: add text prompts, points or a box to the session first")
            if start_frame is None:
                start_frame = 0 if session.state.prompts else _first_prompted_frame(session.state)
            start = check_index(start_frame, total, session.source.name)
        limit = total if max_frames is None else max_frames
        passes = []
        if direction in ("forward", "both"):
            passes.append((range(start, min(start + limit, total)), False))
        if direction == "backward":
            passes.append((range(start, max(start - limit, -1), -1), True))
        if direction == "both":
            passes.append((range(start - 1, max(start - limit, -1), -1), True))
        return self._propagate(session_id, passes, start)

    def _propagate(self, session_id: str, passes: list[tuple[range, bool]], anchor: int) -> Iterator[FrameResult]:
        for order, reverse in passes:
            yield from self._run_pass(session_id, order, reverse, anchor)

    def _run_pass(self, session_id: str, order: range, reverse: bool, anchor: int) -> Iterator[FrameResult]:
        buffer: deque[RawFrame] = deque()
        for frame_idx in order:
            with self._lock:
                session = self._sessions.get(session_id)
                delay = self.settings.hotstart_delay if session.state.prompts else 0
                buffer.append(self._step(session, frame_idx, reverse, anchor))
                ready = [buffer.popleft() for _ in range(max(0, len(buffer) - delay))]
                results = [self._finish(session, raw) for raw in ready]
            yield from results
        with self._lock:
            session = self._sessions.get(session_id)
            results = [self._finish(session, raw) for raw in buffer]
        yield from results

    def _step(self, session: VideoSession, frame_idx: int, reverse: bool, anchor: int) -> RawFrame:
        state = session.state
        before = set(state.obj_ids)
        if state.prompts:
            raw = detect_and_track(self.model, state, frame_idx, reverse)
        else:
            raw = track_only(self.model, state, frame_idx, reverse, clean_area=self._memory_clean_area,
                             max_objects_per_pass=self.options.max_objects_per_pass)
        self._drop_duplicates(session, raw, before)
        protect_clicked(self.model, state, session.pinned)
        if not self.options.keep_all_state:
            trim_session(state, frame_idx, self.policy, anchors=(anchor,))
        return raw

    def _drop_duplicates(self, session: VideoSession, raw: RawFrame, before: set[int]) -> None:
        """Mask NMS among objects the detector created on this frame (transformers skips it offline)."""
        new = [i for i, obj_id in enumerate(raw.object_ids) if obj_id not in before]
        if len(new) < 2:
            return
        ids = [raw.object_ids[i] for i in new]
        groups = session.object_groups()
        dropped = suppress_duplicates(raw.logits[new] > 0, [raw.scores[i] for i in ids],
                                      [groups.get(i, -1) for i in ids], self.settings.nms_iou_threshold)
        for position in dropped:
            obj_id = ids[position]
            session.hidden.add(obj_id)
            session.state.remove_object(obj_id)
        if dropped:
            logger.debug("frame %d: dropped duplicate new objects %s", raw.frame_index, [ids[p] for p in dropped])

    def _finish(self, session: VideoSession, raw: RawFrame) -> FrameResult:
        hidden = session.hidden | set(getattr(session.state, "removed_obj_ids", ()))
        return build_frame_result(raw, hidden=hidden, groups=session.object_groups(), phrases=session.phrases,
                                  frame_size=session.frame_size, fill_hole_area=self.settings.fill_hole_area)

    # -- housekeeping ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every session."""
        with self._lock:
            self._sessions.close_all()

    def __enter__(self) -> VideoEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _first_prompted_frame(state) -> int:
    """The earliest frame with clicks or a box in a ``Sam3VideoInferenceSession`` (0 if none)."""
    frames = [t for per_frame in state.point_inputs_per_obj.values() for t in per_frame]
    return min(frames, default=0)
