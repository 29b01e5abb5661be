"""``POST /v1/segment`` (raw SAM 3: every instance of each phrase) and ``POST /v1/refine`` (one object from
clicks or a box). Both go through the app's one engine, which batches concurrent requests.

``/v1/refine`` answers the mask's low-resolution logits (``low_res_logits``: shape, dtype, base64 of
the float16 values); sent back as ``mask_input`` with more clicks on the same image, they refine that
mask instead of starting over.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sam3_core.errors import PromptError
from sam3_core.images import LoadedImage
from sam3_core.results import PhraseResult, RefineResult
from serving.http.common import body_doc, load_image_source, read_request, runtime, with_timeout
from serving.http.render import mask_out
from serving.http.schemas import (
    ErrorResponse,
    MaskLogits,
    RefineParams,
    RefineRequest,
    RefineResponse,
    SegmentParams,
    SegmentRequest,
    SegmentResponse,
)

router = APIRouter(prefix="/v1", tags=["segmentation"])

#: Error responses every image endpoint documents.
IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in (
        (400, "bad input: unreadable image, empty phrase, invalid box or click"),
        (401, "missing or wrong bearer token"), (413, "body or image over the server's limits"),
        (415, "neither JSON nor multipart"), (422, "the body does not match the schema"),
        (503, "the model is not loaded yet"), (504, "the request ran past its timeout"))}


def _image_info(image: LoadedImage) -> dict[str, int]:
    return {"width": image.width, "height": image.height}


def _segment_document(results: list[PhraseResult], params: SegmentParams) -> list[dict[str, Any]]:
    out = []
    for result in results:
        rles = result.rles if "rle" in params.formats else [None] * len(result)
        instances = [mask_out(mask, score, box, params.formats, params.polygon_tolerance, rle)
                     for mask, score, box, rle in zip(result.masks, result.scores, result.boxes, rles)]
        out.append({"phrase": result.phrase, "presence_score": round(float(result.presence_score), 6),
                    "truncated": result.truncated, "instances": instances})
    return out


def encode_logits(logits: np.ndarray) -> dict[str, Any]:
    """Low-resolution mask logits as a :class:`MaskLogits` document (float16)."""
    values = np.ascontiguousarray(logits, dtype="<f2")
    return {"shape": list(values.shape), "dtype": "float16", "base64": base64.b64encode(values.tobytes()).decode()}


def decode_logits(spec: MaskLogits) -> np.ndarray:
    """A :class:`MaskLogits` document as a float32 ``(h, w)`` array; :class:`PromptError` (400) if malformed."""
    try:
        raw = base64.b64decode(spec.base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PromptError(f"mask_input.base64 is not valid base64: {exc}") from exc
    dtype = np.dtype("<f2" if spec.dtype == "float16" else "<f4")
    height, width = spec.shape
    if len(raw) != height * width * dtype.itemsize:
        raise PromptError(f"mask_input holds {len(raw)} bytes, but shape {spec.shape} of {spec.dtype} needs "
                          f"{height * width * dtype.itemsize}")
    values = np.frombuffer(raw, dtype=dtype).reshape(height, width).astype(np.float32)
    if not np.isfinite(values).all():
        raise PromptError("mask_input has values that are not finite")
    return values


@router.post("/segment", response_model=SegmentResponse, responses=IMAGE_ERRORS,
             openapi_extra=body_doc(SegmentRequest, SegmentParams),
             summary="Every instance of each phrase (raw SAM 3)")
async def segment(request: Request) -> JSONResponse:
    """Find every instance of each noun phrase (and/or of the exemplar boxes) with SAM 3.

    Returns per phrase its presence score and, per instance, score, box and the mask in the
    requested ``formats``. Instances scoring at or below ``score_threshold`` are dropped.
    """
    rt = runtime(request)
    engine = rt.require_engine()
    source, params = await read_request(request, SegmentRequest, SegmentParams)
    start = time.perf_counter()
    threshold = params.score_threshold if params.score_threshold is not None else rt.settings.agent.score_threshold

    async def work() -> tuple[LoadedImage, list[dict[str, Any]]]:
        image = await load_image_source(rt, source)
        results = await engine.asegment(image, params.phrases or None, exemplar_boxes=params.exemplar_boxes,
                                        exemplar_labels=params.exemplar_labels, score_threshold=threshold,
                                        mask_threshold=params.mask_threshold, output_formats=params.formats)
        return image, await asyncio.to_thread(_segment_document, results, params)

    image, results = await with_timeout(work(), rt.settings.request_timeout_s, "segmentation")
    elapsed = round((time.perf_counter() - start) * 1000, 2)
    return JSONResponse({"image": _image_info(image), "results": results, "elapsed_ms": elapsed})


@router.post("/refine", response_model=RefineResponse, responses=IMAGE_ERRORS,
             openapi_extra=body_doc(RefineRequest, RefineParams), summary="One object's mask from clicks or a box")
async def refine(request: Request) -> JSONResponse:
    """Segment one object from foreground/background clicks and/or a box (SAM 2-style prompting).

    With ``mask_input`` (the ``low_res_logits`` of an earlier answer) the clicks refine that mask.
    """
    rt = runtime(request)
    engine = rt.require_engine()
    source, params = await read_request(request, RefineRequest, RefineParams)
    start = time.perf_counter()

    mask_input = decode_logits(params.mask_input) if params.mask_input is not None else None

    async def work() -> tuple[LoadedImage, RefineResult, dict[str, Any]]:
        image = await load_image_source(rt, source)
        result = await engine.arefine(image, points=params.points, point_labels=params.point_labels,
                                      box=params.box, mask_input=mask_input, multimask=params.multimask)
        document = await asyncio.to_thread(mask_out, result.mask, result.score, result.box, params.formats,
                                           params.polygon_tolerance)
        return image, result, document

    image, result, mask = await with_timeout(work(), rt.settings.request_timeout_s, "refinement")
    elapsed = round((time.perf_counter() - start) * 1000, 2)
    document: dict[str, Any] = {"image": _image_info(image), "mask": mask}
    if params.return_logits:
        document["low_res_logits"] = encode_logits(result.low_res_logits)
    return JSONResponse({**document, "elapsed_ms": elapsed})
