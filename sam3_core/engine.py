"""``Sam3Engine``: SAM 3 served fast and safely on one device.

Typical use::

    engine = Sam3Engine.from_pretrained("facebook/sam3")
    results = engine.segment("street.jpg", ["car", "traffic light"])   # encodes once, one batched pass
    results = engine.segment("street.jpg", ["bus"])                    # cache hit: no image encoding
    refined = engine.refine("street.jpg", points=[[320, 240]], point_labels=[1])
    results = await engine.asegment(image, ["dog"])                    # from many tasks at once

All model work happens on one worker thread that micro-batches requests arriving together (see
:mod:`sam3_core.batching`); the sync methods submit to it and wait, so both APIs can be mixed.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .admission import AdmissionLimits, check_admission, max_masks_per_phrase
from .batching import BatchStats, MicroBatcher
from .cache import CacheStats, FeatureCache
from .detector import MAX_TEXT_TOKENS, ImageFeatures, PromptSpec, SerialTokenizer, cached_bytes, count_tokens
from .errors import PromptError, UsageError
from .geometry import check_threshold, clip_boxes
from .handler import BatchHandler, EncodeRequest, EngineCounters, RefineRequest, SegmentRequest
from .images import DEFAULT_MAX_PIXELS, ImageInput, LoadedImage, load_image
from .loading import DEFAULT_MODEL_ID, load_models, resolve_device, resolve_dtype
from .phrases import clean_phrases
from .results import RefineResult, SegmentationResults
from .tracker import clean_mask_input, validate_clicks

logger = logging.getLogger(__name__)

GIB = 1 << 30


@dataclass(frozen=True)
class EngineOptions:
    """Serving limits of a :class:`Sam3Engine`.

    Attributes:
        cache_bytes: budget of the image-encoding LRU cache (one full-size image takes ~110 MB in bf16).
        max_pixels: larger input images are refused with an :class:`~sam3_core.errors.ImageError`.
        max_batch: most requests the worker serves in one micro-batch.
        max_wait_ms: longest a request waits for others to join its batch.
        max_encode_batch: most images per vision-encoder pass.
        threads: torch intra-op threads of the worker thread that runs the model (None: torch's default).
            1 suits a small model on a CPU shared with other work: the default (one per core) spins
            threads that wait for each other, and on a loaded 2-core machine a tiny model's batch
            took 10-30x longer than with 1 thread in adjacent runs (``bench.eval --sam-threads``).
        max_prompts_per_pass: most (image, phrase) rows per detector pass; bounds activation memory.
        admission: the per-request budget (phrases, boxes, estimated memory) checked before a request
            is queued; ``None`` uses :class:`~sam3_core.admission.AdmissionLimits` with ``max_pixels``.
    """

    cache_bytes: int = 2 * GIB
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_batch: int = 32
    max_wait_ms: float = 2.0
    max_encode_batch: int = 8
    threads: int | None = None
    max_prompts_per_pass: int = 64
    admission: AdmissionLimits | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"EngineOptions.threads must be >= 1 or None, got {self.threads}")

    @property
    def limits(self) -> AdmissionLimits:
        """The admission budget in force."""
        return self.admission if self.admission is not None else AdmissionLimits(max_pixels=self.max_pixels)


class Sam3Engine:
    """SAM 3 concept segmentation (text and exemplar boxes) and click refinement on one device.

    Build it with :meth:`from_pretrained`. Close it (or use it as a context manager) to stop its
    worker thread.
    """

    def __init__(self, detector, processor, tracker=None, tracker_processor=None, *,
                 device: torch.device, dtype: torch.dtype, options: EngineOptions = EngineOptions()) -> None:
        self.device, self.dtype, self.options = device, dtype, options
        self.processor = processor
        self.has_tracker = tracker is not None
        self.cache: FeatureCache[ImageFeatures] = FeatureCache(options.cache_bytes, size_of=cached_bytes)
        # One lock-guarded tokenizer for callers' threads (token counting) and the worker (batches).
        self.tokenizer = SerialTokenizer(processor.tokenizer)
        self._handler = BatchHandler(
            detector=detector, processor=processor, tokenizer=self.tokenizer, tracker=tracker,
            tracker_processor=tracker_processor,
            cache=self.cache, device=device, dtype=dtype, max_encode_batch=options.max_encode_batch,
            max_prompts_per_pass=options.max_prompts_per_pass,
        )
        # Cache warm-ups (encode requests) go in batches of one encoder pass when nothing else waits, so
        # that a segment request never queues behind a backlog of them (sam3_core.batching).
        self._worker = MicroBatcher(self._handler, max_batch=options.max_batch,
                                    max_wait_s=options.max_wait_ms / 1000.0,
                                    max_deferred=options.max_encode_batch, on_start=self._start_worker)

    def _start_worker(self) -> None:
        """Run on the worker thread before it serves: with OpenMP, torch's thread count is per thread."""
        if self.options.threads is not None:
            torch.set_num_threads(self.options.threads)

    @classmethod
    def from_pretrained(cls, model_id_or_path: str = DEFAULT_MODEL_ID, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, *, options: EngineOptions | None = None,
                        with_tracker: bool = True, token: str | None = None) -> Sam3Engine:
        """Load SAM 3 from the hub id or a local folder.

        Args:
            model_id_or_path: ``"facebook/sam3"`` (gated: accept its licence and log in first) or a folder
                in the Hugging Face format, e.g. one written by ``sam3-agent make-tiny-checkpoint``.
            device: ``None`` picks CUDA when available, else CPU.
            dtype: ``None`` picks bfloat16 on GPU and float32 on CPU.
            options: serving limits; defaults to :class:`EngineOptions`.
            with_tracker: also load the click/box tracker (needed by :meth:`refine`).
            token: a Hugging Face token, if not set by ``hf auth login`` or ``HF_TOKEN``.

        Raises:
            CheckpointError: the checkpoint cannot be loaded; the message says what to do.
        """
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        models = load_models(str(model_id_or_path), with_tracker=with_tracker, token=token)
        # De-duplication happened on CPU; only now do the weights go to the device, once.
        models.detector.to(device=device, dtype=dtype)
        if models.tracker is not None:
            models.tracker.to(device=device, dtype=dtype)
        logger.info("loaded %s on %s in %s (tracker: %s, shared backbone: %s)", model_id_or_path, device,
                    dtype, models.tracker is not None, models.shared_backbone)
        return cls(models.detector, models.processor, models.tracker, models.tracker_processor,
                   device=device, dtype=dtype, options=options or EngineOptions())

    # -- public sync API ---------------------------------------------------------------------------

    def encode(self, image: ImageInput) -> ImageFeatures:
        """Encode ``image`` (or fetch it from the cache) and return its cached features.

        A cache warm-up: requests that need an image's features (segment, refine) are served first, and
        this one at the latest after ``max_defer_s`` (one second) of waiting (see :mod:`sam3_core.batching`).
        """
        return self._worker.submit(EncodeRequest(image=self.load(image))).result()

    def segment(self, image: ImageInput, phrases: str | Sequence[str] | None,
                exemplar_boxes: Sequence[Sequence[float]] | None = None,
                exemplar_labels: Sequence[int | bool] | None = None,
                score_threshold: float = 0.5, mask_threshold: float = 0.5,
                output_formats: Sequence[str] = ()) -> SegmentationResults:
        """Find every instance of each phrase; one :class:`PhraseResult` per phrase, in order.

        The list returned is a :class:`~sam3_core.results.SegmentationResults`: it keeps the image, so
        ``.plot()`` draws the numbered masks with a legend and ``.save(path)`` writes the picture or JSON.

        Args:
            image: path, bytes, PIL image or array (see :func:`sam3_core.images.load_image`).
            phrases: short noun phrases. ``None`` or ``[]`` with exemplar boxes runs a box-only prompt.
            exemplar_boxes: pixel ``x1, y1, x2, y2`` boxes of example instances, applied to every phrase.
            exemplar_labels: per box, 1 (an instance of the concept) or 0 (not one); default all 1.
            score_threshold: keep instances whose score (object x presence) is above this.
            mask_threshold: mask probability above which a pixel is foreground.
            output_formats: formats (``rle``, ``png``, ``polygons``) the caller will render every mask in;
                only counted in the admission budget.

        Raises:
            PromptError: a phrase, box or threshold is invalid (not finite, off the image, ...).
            AdmissionError: the request is over a limit of ``options.limits`` (named in ``limit``).
        """
        request = self._segment_request(image, phrases, exemplar_boxes, exemplar_labels, score_threshold,
                                        mask_threshold, output_formats)
        return SegmentationResults(request.image, self._worker.submit(request).result())

    def refine(self, image: ImageInput, points: Sequence[Sequence[float]] | None = None,
               point_labels: Sequence[int] | None = None, box: Sequence[float] | None = None,
               mask_input: np.ndarray | None = None, multimask: bool | None = None) -> RefineResult:
        """One object's mask from clicks and/or a box, using the image's cached encoding.

        Args:
            points: pixel ``(x, y)`` clicks. point_labels: 1 foreground, 0 background, one per point.
            box: pixel ``x1, y1, x2, y2`` around the object.
            mask_input: ``RefineResult.low_res_logits`` of an earlier call (or a bool mask) to refine.
            multimask: let the model propose three masks and keep the best; default: only for one click.
        """
        return self._worker.submit(self._refine_request(image, points, point_labels, box, mask_input,
                                                        multimask)).result()

    # -- public async API --------------------------------------------------------------------------

    async def asegment(self, image: ImageInput, phrases: str | Sequence[str] | None,
                       **kwargs) -> SegmentationResults:
        """:meth:`segment` for asyncio; concurrent calls are batched together."""
        request = await asyncio.to_thread(self._segment_request, image, phrases,
                                          kwargs.pop("exemplar_boxes", None), kwargs.pop("exemplar_labels", None),
                                          kwargs.pop("score_threshold", 0.5), kwargs.pop("mask_threshold", 0.5),
                                          kwargs.pop("output_formats", ()))
        if kwargs:
            raise UsageError(f"unexpected arguments to asegment: {sorted(kwargs)}")
        return SegmentationResults(request.image, await asyncio.wrap_future(self._worker.submit(request)))

    async def aencode(self, image: ImageInput) -> ImageFeatures:
        """:meth:`encode` for asyncio; concurrent calls share encoder passes.

        Warms the feature cache ahead of a :meth:`asegment` on the same image, e.g. while an LLM is still
        deciding what to look for in it.
        """
        loaded = await asyncio.to_thread(self.load, image)
        return await asyncio.wrap_future(self._worker.submit(EncodeRequest(image=loaded)))

    async def arefine(self, image: ImageInput, points=None, point_labels=None, box=None, mask_input=None,
                      multimask: bool | None = None) -> RefineResult:
        """:meth:`refine` for asyncio."""
        request = await asyncio.to_thread(self._refine_request, image, points, point_labels, box, mask_input,
                                          multimask)
        return await asyncio.wrap_future(self._worker.submit(request))

    # -- housekeeping ------------------------------------------------------------------------------

    def load(self, image: ImageInput) -> LoadedImage:
        """Decode ``image`` under this engine's pixel limit."""
        return load_image(image, self.options.max_pixels)

    def cache_stats(self) -> CacheStats:
        return self.cache.stats()

    def counters(self) -> EngineCounters:
        return EngineCounters(**vars(self._handler.counters))

    def queue_depth(self) -> int:
        return self._worker.queue_depth()

    def batch_stats(self) -> BatchStats:
        """How the worker has batched so far: batches, requests, the largest batch and its busy seconds."""
        return self._worker.stats()

    def close(self) -> None:
        """Serve what is queued, then stop the worker. Later calls raise :class:`UsageError`."""
        self._worker.close()
        self.cache.clear()

    def __enter__(self) -> Sam3Engine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- request building (runs in the caller's thread) --------------------------------------------

    def _segment_request(self, image, phrases, exemplar_boxes, exemplar_labels, score_threshold,
                         mask_threshold, output_formats=()) -> SegmentRequest:
        score_threshold = check_threshold(score_threshold, "score_threshold")
        mask_threshold = check_threshold(mask_threshold, "mask_threshold")
        has_boxes = exemplar_boxes is not None and len(exemplar_boxes) > 0
        texts = _check_phrases(phrases, has_boxes=has_boxes)
        loaded = self.load(image)
        boxes, labels = _exemplar_tensors(exemplar_boxes, exemplar_labels, loaded.size_hw)
        # Refused here, in the caller's thread, before the request can occupy the worker.
        limits, pixels, formats = self.options.limits, loaded.height * loaded.width, tuple(output_formats)
        check_admission(limits, pixels=pixels, phrases=len(texts), exemplar_boxes=0 if boxes is None else len(boxes),
                        formats=formats)
        max_masks = max_masks_per_phrase(limits, pixels=pixels, phrases=len(texts), formats=formats)
        tokenizer = self.tokenizer
        prompts = []
        for text in texts:
            truncated = count_tokens(tokenizer, text) > MAX_TEXT_TOKENS
            if truncated:
                warnings.warn(f"phrase {text[:40]!r}... is longer than SAM 3's {MAX_TEXT_TOKENS} tokens and "
                              "was truncated; use a short noun phrase", stacklevel=4)
            prompts.append(PromptSpec(text, boxes, labels, truncated, score_threshold, mask_threshold, max_masks))
        return SegmentRequest(image=loaded, prompts=prompts)

    def _refine_request(self, image, points, point_labels, box, mask_input, multimask) -> RefineRequest:
        if not self.has_tracker:
            raise UsageError("this engine was loaded without the tracker (a detector-only checkpoint or "
                             "with_tracker=False); refine needs it")
        loaded = self.load(image)
        points, point_labels, box = validate_clicks(points, point_labels, box, loaded.size_hw)
        mask_input = clean_mask_input(mask_input)
        check_admission(self.options.limits, pixels=loaded.height * loaded.width, phrases=1)
        return RefineRequest(image=loaded, points=points, point_labels=point_labels, box=box,
                             mask_input=mask_input, multimask=multimask)


def _check_phrases(phrases: str | Sequence[str] | None, *, has_boxes: bool) -> list[str]:
    if not phrases and has_boxes:
        return ["visual"]  # SAM 3's text for a prompt made of exemplar boxes alone
    if not phrases:
        raise PromptError("no phrases given: pass at least one noun phrase or some exemplar boxes")
    return clean_phrases(phrases)


def _exemplar_tensors(boxes, labels, size_hw: tuple[int, int]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Pixel xyxy boxes, clipped to the image, to the normalised cx, cy, w, h the model takes, with labels 1/0.

    Clipping bounds what a box can cost: ``roi_align`` samples in proportion to the box's area.
    """
    if boxes is None or len(boxes) == 0:
        if labels is not None and len(labels) > 0:
            raise PromptError("exemplar_labels given without exemplar_boxes")
        return None, None
    array = clip_boxes(boxes, size_hw, what="exemplar_boxes")
    try:
        labels = [1] * len(array) if labels is None else [int(v) for v in labels]
    except (TypeError, ValueError, OverflowError) as exc:
        raise PromptError(f"exemplar_labels must be 1 or 0 per box: {exc}") from exc
    if len(labels) != len(array) or any(v not in (0, 1) for v in labels):
        raise PromptError("exemplar_labels must hold one 1 (positive) or 0 (negative) per exemplar box")
    height, width = size_hw
    scaled = array / np.array([width, height, width, height])
    cxcywh = np.stack([(scaled[:, 0] + scaled[:, 2]) / 2, (scaled[:, 1] + scaled[:, 3]) / 2,
                       scaled[:, 2] - scaled[:, 0], scaled[:, 3] - scaled[:, 1]], axis=1)
    return torch.tensor(cxcywh, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)
