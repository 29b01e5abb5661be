"""Executing a micro-batch of engine requests on the worker thread.

Order of work for one batch: encode every image that is neither cached nor already encoded in this
batch (all of them in one vision forward), then run every segment prompt in as few detector passes
as possible, then the refine requests. A failure inside a shared pass is retried request by request
so that one bad request cannot fail its neighbours.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .batching import Request
from .cache import FeatureCache
from .detector import ImageFeatures, PromptSpec, encode_images, run_prompts
from .images import LoadedImage
from .tracker import run_refine, tracker_embeddings

logger = logging.getLogger(__name__)


def preprocess(image_processor, images: list[LoadedImage]) -> torch.Tensor:
    """``(B, 3, S, S)`` pixel values of ``(H, W, 3)`` RGB images.

    The layout is stated, not guessed: the processor's guess reads an image 1 or 3 pixels high as
    channels-first (a 1-pixel-high image then fails, a 3-pixel-high one is silently transposed).
    """
    return image_processor(images=[image.pixels for image in images], return_tensors="pt",
                           input_data_format="channels_last")["pixel_values"]


class _OnImage:
    """Requests on one image share its encoding: their :meth:`affinity` is the image's content key."""

    image: LoadedImage

    def affinity(self) -> Hashable | None:
        return self.image.key


@dataclass
class EncodeRequest(_OnImage, Request):
    """Encode an image into the cache. Deferrable: it warms the cache ahead of the requests that need it
    (see :mod:`sam3_core.batching`)."""

    image: LoadedImage
    deferrable: ClassVar[bool] = True


@dataclass
class SegmentRequest(_OnImage, Request):
    image: LoadedImage
    prompts: list[PromptSpec]


@dataclass
class RefineRequest(_OnImage, Request):
    image: LoadedImage
    points: list | None
    point_labels: list | None
    box: list | None
    mask_input: object | None
    multimask: bool | None


@dataclass
class EngineCounters:
    """Work done by the engine: images encoded, detector passes, prompts run, refines."""

    images_encoded: int = 0
    encoder_passes: int = 0
    detector_passes: int = 0
    prompts: int = 0
    refines: int = 0
    shared_in_batch: int = 0


@dataclass
class BatchHandler:
    """Callable the :class:`~sam3_core.batching.MicroBatcher` runs for each batch."""

    detector: object
    processor: object
    tokenizer: object
    tracker: object | None
    tracker_processor: object | None
    cache: FeatureCache[ImageFeatures]
    device: torch.device
    dtype: torch.dtype
    max_encode_batch: int = 8
    max_prompts_per_pass: int = 64
    counters: EngineCounters = field(default_factory=EngineCounters)
    shared_positions: dict = field(default_factory=dict)

    def __call__(self, batch: list[Request]) -> None:
        features = self._features_for(batch)
        segments = [r for r in batch if isinstance(r, SegmentRequest) and r.image.key in features]
        refines = [r for r in batch if isinstance(r, RefineRequest) and r.image.key in features]
        for request in batch:
            if isinstance(request, EncodeRequest) and request.image.key in features:
                request.future.set_result(features[request.image.key])
        if segments:
            self._segment(segments, features)
        for request in refines:
            self._refine(request, features[request.image.key])

    # -- image encoding ---------------------------------------------------------------------------

    def _features_for(self, batch: list[Request]) -> dict[str, ImageFeatures]:
        """Features of every image in the batch, encoding the missing ones together."""
        found: dict[str, ImageFeatures] = {}
        missing: dict[str, LoadedImage] = {}
        for request in batch:
            key = request.image.key
            if key in found or key in missing:
                self.counters.shared_in_batch += 1
                continue
            cached = self.cache.get(key)
            if cached is not None:
                found[key] = cached
            else:
                missing[key] = request.image
        images = list(missing.values())
        for start in range(0, len(images), self.max_encode_batch):
            self._encode_chunk(images[start : start + self.max_encode_batch], batch, found)
        return found

    def _encode_chunk(self, chunk: list[LoadedImage], batch: list[Request], found: dict[str, ImageFeatures]) -> None:
        """Encode ``chunk`` in one pass; if that fails, image by image, so that one image the
        preprocessing or the model cannot take fails only the requests that sent it."""
        try:
            encoded = self._encode(chunk)
        except Exception as exc:
            if len(chunk) > 1:
                logger.warning("encoding %d images together failed (%s); encoding them one by one", len(chunk), exc)
                for image in chunk:
                    self._encode_chunk([image], batch, found)
                return
            logger.exception("encoding a %dx%d image failed", chunk[0].width, chunk[0].height)
            for request in batch:
                if request.image.key == chunk[0].key and not request.future.done():
                    request.future.set_exception(exc)
            return
        for image, feat in zip(chunk, encoded):
            found[image.key] = feat
            self.cache.put(image.key, feat)

    def _encode(self, images: list[LoadedImage]) -> list[ImageFeatures]:
        pixel_values = preprocess(self.processor.image_processor, images).to(self.device, self.dtype)
        self.counters.images_encoded += len(images)
        self.counters.encoder_passes += 1
        return encode_images(self.detector, pixel_values, [image.size_hw for image in images],
                             self.shared_positions)

    # -- concept segmentation ---------------------------------------------------------------------

    def _segment(self, requests: list[SegmentRequest], features: dict[str, ImageFeatures]) -> None:
        """Group prompts by their number of exemplar boxes (no padding ever mixes prompts), then run
        each group in passes of at most ``max_prompts_per_pass`` rows, images kept contiguous."""
        groups: dict[int, list[tuple[SegmentRequest, int]]] = defaultdict(list)
        for request in requests:
            for index, prompt in enumerate(request.prompts):
                n_boxes = -1 if prompt.boxes is None else int(prompt.boxes.shape[0])
                groups[n_boxes].append((request, index))
        results: dict[int, list] = {id(r): [None] * len(r.prompts) for r in requests}
        failed: set[int] = set()
        for rows in groups.values():
            rows.sort(key=lambda row: row[0].image.key)
            for start in range(0, len(rows), self.max_prompts_per_pass):
                self._run_rows(rows[start : start + self.max_prompts_per_pass], features, results, failed)
        for request in requests:
            if id(request) in failed or request.future.done():
                continue
            refused = [r for r in results[id(request)] if isinstance(r, Exception)]
            if refused:  # a phrase over the request's budget (see sam3_core.admission) fails it alone
                request.future.set_exception(refused[0])
            else:
                request.future.set_result(results[id(request)])

    def _run_rows(self, rows, features, results, failed) -> None:
        items: list[tuple[ImageFeatures, list[PromptSpec]]] = []
        last_key = None
        for request, index in rows:
            if request.image.key != last_key:
                items.append((features[request.image.key], []))
                last_key = request.image.key
            items[-1][1].append(request.prompts[index])
        try:
            grouped = run_prompts(self.detector, self.tokenizer, items, dtype=self.dtype)
        except Exception as exc:
            if len({id(r) for r, _ in rows}) == 1:
                request = rows[0][0]
                failed.add(id(request))
                if not request.future.done():
                    request.future.set_exception(exc)
                return
            logger.warning("a shared detector pass failed (%s); retrying request by request", exc)
            by_request: dict[int, list] = defaultdict(list)
            for row in rows:
                by_request[id(row[0])].append(row)
            for own_rows in by_request.values():
                self._run_rows(own_rows, features, results, failed)
            return
        self.counters.detector_passes += 1
        self.counters.prompts += len(rows)
        flat = [result for group in grouped for result in group]
        for (request, index), result in zip(rows, flat):
            results[id(request)][index] = result

    # -- promptable (click/box) segmentation ------------------------------------------------------

    def _refine(self, request: RefineRequest, feat: ImageFeatures) -> None:
        try:
            if feat.tracker_embeddings is None:
                feat.tracker_embeddings = tracker_embeddings(self.tracker, feat)
                self.cache.put(request.image.key, feat)  # re-put: its size in bytes has grown
            result = run_refine(
                self.tracker, self.tracker_processor, feat.tracker_embeddings, feat.image_size,
                points=request.points, point_labels=request.point_labels, box=request.box,
                mask_input=request.mask_input, multimask=request.multimask, dtype=self.dtype,
            )
        except Exception as exc:
            request.future.set_exception(exc)
            return
        self.counters.refines += 1
        request.future.set_result(result)
