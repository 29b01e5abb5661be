"""The four tools of the image agent (kinds: search, verify, answer, answer).

* :data:`segment_phrase` runs SAM 3 on the thread's image. Within the phrase, overlapping instances are
  thinned by intersection over the smaller mask (``AgentSettings.iom_threshold``, best score kept) and
  capped at ``max_masks_per_phrase``. **Duplicates across phrases are dropped, not re-added:** a mask
  whose IoU with any mask already on the thread exceeds ``duplicate_iou`` gets no new id; the result
  names the existing id (a duplicate of a rejected mask stays rejected). So an object keeps one id
  however many phrases find it, and the overlay never shows the same object twice.
* :data:`examine_each_mask` asks the LLM one accept/reject question per candidate mask not examined
  yet (the raw image, that mask alone, a zoomed crop), all at once with :func:`asyncio.gather`.
  Rejected masks leave the candidates; an answer without a clear verdict keeps the mask. The questions
  are usually ready before the tool runs: :func:`prepare_verification` builds them in a background
  thread while the model thinks about its next step, so the step costs about one LLM call's latency.
* :data:`select_masks_and_return` and :data:`report_no_mask` end the query.

Mistakes of the model (a repeated phrase -- refused before SAM 3 runs --, an unknown id, the phrase
budget used up, ``examine_each_mask`` before any mask) raise :class:`~sam3_core.errors.ModelRetry` with
a message that says how to fix the call. A phrase that finds nothing is answered with the
``after_segment_none`` prompt, which asks for a different phrase.

Tools report their SAM 3 time and LLM usage to ``env.meter`` for the trace (:mod:`agent.trace`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Hashable
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import Field

from agent.context import Context
from agent.settings import AgentSettings
from agent.state import MaskRecord, State
from agent.trace import StepMeter
from prompts import render_prompt
from sam3_core.errors import InputError, ModelRetry, UsageError
from sam3_core.packed_masks import PackedMasks
from sam3_core.postprocess import masks_to_rle, packed_mask_iou, remove_overlaps_iom, rle_to_mask
from tools.phrases import MAX_PHRASE_CHARS, check_phrase, format_ids, format_phrases, normalise_phrase
from tools.registry import Tool, ToolEnv, ToolOutcome, tool
from tools.verification import anchor_key, parse_verdict, prepare_verification, verify_mask

__all__ = [  # the phrase and verification helpers live in tools.phrases and tools.verification
    "ALL_TOOLS", "MAX_PHRASE_CHARS", "SHOWN_IDS", "anchor_key", "check_phrase", "examine_each_mask", "format_ids",
    "format_phrases", "image_context", "normalise_phrase", "parse_verdict", "prepare_verification",
    "report_no_mask", "segment_phrase", "select_masks_and_return", "tools_for", "verify_mask",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Most unknown ids named in a retry message.
SHOWN_IDS = 20


def image_context(env: ToolEnv) -> Context:
    """The tool's run context, which must be an image :class:`~agent.context.Context`."""
    if not isinstance(env.context, Context):
        raise UsageError(f"the image tools need an image Context, got {type(env.context).__name__}")
    return env.context


# ----------------------------------------------------------------------------------- segment_phrase


async def _shielded(work: Awaitable[T]) -> T:
    """Await ``work`` in a task of its own that a cancelled caller does not cancel.

    The engine batches requests of concurrent queries together, so a query abandoned at its deadline
    lets its engine call finish (and drops the result) instead of cancelling it inside a shared batch.
    """
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieve an abandoned task's error
    return await asyncio.shield(task)


async def _run_sam(ctx: Context, phrase: str, meter: StepMeter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SAM 3 masks, scores and boxes for ``phrase`` after overlap removal and the per-phrase cap."""
    settings = ctx.settings
    try:
        with meter.timing("sam"):
            work = ctx.engine.asegment(ctx.image, [phrase], score_threshold=settings.score_threshold)
            result = (await _shielded(work))[0]
    except InputError as exc:
        raise ModelRetry(f'SAM 3 could not use the phrase "{phrase}": {exc}. Try a short noun phrase.') from exc
    if len(result) == 0:
        return result.masks, result.scores, result.boxes
    keep = list(remove_overlaps_iom(result.masks, result.scores, settings.iom_threshold))
    keep = keep[: settings.max_masks_per_phrase]
    return result.masks[keep], result.scores[keep], result.boxes[keep]


def _match_existing(state: State, masks: np.ndarray | PackedMasks, threshold: float, size_hw: tuple[int, int],
                    cache: dict[Hashable, Any] | None = None) -> list[int | None]:
    """For each new mask, the id of the existing mask it duplicates (IoU > threshold), or None.

    IoU is at most 1, so a threshold >= 1 finds no duplicates: the existing masks are not even decoded.
    The existing masks' packed copies are taken from ``cache`` (the query's ``ctx.cache``, filled by
    :func:`_remember_packed`) where present; the others are decoded from their RLE and added to it.
    """
    if not state.masks or len(masks) == 0 or threshold >= 1:
        return [None] * len(masks)
    new = masks if isinstance(masks, PackedMasks) else PackedMasks(np.asarray(masks, dtype=bool))
    parts = []
    for record in state.masks:
        part = cache.get(_packed_key(record["id"])) if cache is not None else None
        if part is None:
            part = PackedMasks(rle_to_mask(record["rle"])[None])
            if cache is not None:
                cache[_packed_key(record["id"])] = part
        parts.append(part)
    iou = packed_mask_iou(new, PackedMasks.concatenate(parts, size_hw))
    out: list[int | None] = []
    for row in iou:
        best = int(np.argmax(row))
        out.append(state.masks[best]["id"] if row[best] > threshold else None)
    return out


def _packed_key(mask_id: int) -> tuple[str, int]:
    """The ``ctx.cache`` key of a mask's bit-packed copy (for the duplicate checks of later phrases)."""
    return ("packed_mask", mask_id)


def _remember_packed(cache: dict[Hashable, Any], packed: PackedMasks, matches: list[int | None],
                     records: list[MaskRecord]) -> None:
    """Keep the new records' packed masks, so that the next phrase's duplicate check need not decode them."""
    fresh = [i for i, match in enumerate(matches) if match is None]
    for i, record in zip(fresh, records):
        cache[_packed_key(record["id"])] = packed.take([i])


def _new_records(state: State, phrase: str, masks: np.ndarray, scores: np.ndarray, boxes: np.ndarray,
                 matches: list[int | None]) -> list[MaskRecord]:
    """Records (with fresh ids, in score order) for the masks that duplicate nothing."""
    fresh = [i for i, match in enumerate(matches) if match is None]
    rles = masks_to_rle(masks[fresh]) if fresh else []
    return [
        MaskRecord(
            id=state.next_mask_id + k, phrase=phrase, score=round(float(scores[i]), 4),
            box=[round(float(v), 1) for v in boxes[i]], area=int(masks[i].sum()), rle=rle,
            status="candidate", verified=False,
        )
        for k, (i, rle) in enumerate(zip(fresh, rles))
    ]


def _segment_text(state: State, phrase: str, new_ids: list[int], duplicate_ids: list[int], tried: list[str]) -> str:
    """The tool result: the after_segment prompt, plus a note on duplicates and earlier masks."""
    if new_ids:
        text = render_prompt("after_segment", phrase=phrase, num_new_masks=len(new_ids),
                             new_mask_ids=format_ids(new_ids), tried_phrases=format_phrases(tried), query=state.query)
    else:
        text = render_prompt("after_segment_none", phrase=phrase, tried_phrases=format_phrases(tried),
                             query=state.query)
    notes = []
    known = sorted({i for i in duplicate_ids if (m := state.mask_by_id(i)) and m["status"] == "candidate"})
    rejected = sorted(set(duplicate_ids) - set(known))
    if known:
        notes.append(f"It also found masks that were already found earlier: ids {format_ids(known)} (unchanged).")
    if rejected:
        notes.append(f"It also found masks that were rejected earlier: ids {format_ids(rejected)} (still rejected).")
    if not new_ids and state.candidates():
        notes.append(f"Current candidate masks (on the attached overlay): ids {format_ids(state.candidate_ids())}.")
    return "\n\n".join([text, *notes])


@tool
async def segment_phrase(
    env: ToolEnv,
    text_prompt: Annotated[str, Field(description='A short noun phrase naming the target, e.g. "cup" or "red car".')],
) -> ToolOutcome:
    """Run SAM 3 with one short noun phrase and add every instance it finds to the candidate masks.

    Each new mask gets a new numeric id, shown on the overlay that comes back with the result; masks
    found earlier keep their ids. A mask that is practically identical to one found earlier is not
    added again: the result names the existing id instead. Never repeat a phrase you already tried.
    """
    state, ctx = env.state, image_context(env)
    phrase = normalise_phrase(text_prompt)
    check_phrase(state, ctx.settings, phrase)
    masks, scores, boxes = await _run_sam(ctx, phrase, env.meter)
    packed = PackedMasks(np.asarray(masks, dtype=bool))
    matches = _match_existing(state, packed, ctx.settings.duplicate_iou, ctx.image.size_hw, ctx.cache)
    records = _new_records(state, phrase, masks, scores, boxes, matches)
    _remember_packed(ctx.cache, packed, matches, records)
    tried = [*state.phrases_tried, phrase]
    new_ids = [r["id"] for r in records]
    duplicates = [m for m in matches if m is not None]
    logger.info("segment_phrase(%r): %d new mask(s) %s, %d duplicate(s)", phrase, len(new_ids), new_ids,
                len(duplicates))
    after = dataclasses.replace(state, masks=[*state.masks, *records])
    update = {"masks": after.masks, "next_mask_id": state.next_mask_id + len(records), "phrases_tried": tried}
    return ToolOutcome(text=_segment_text(after, phrase, new_ids, duplicates, tried), update=update, prune=True)


# ----------------------------------------------------------------------------------- examine_each_mask


@tool(kind="verify")
async def examine_each_mask(env: ToolEnv) -> ToolOutcome:
    """Check each candidate mask not examined yet on its own and accept or reject it against the query.

    Every mask is judged separately from the whole image, the image with only that mask highlighted,
    and a close-up of it. Rejected masks are removed from the candidates. Use it when the overlay does
    not make clear which masks match (small, overlapping or many masks, or fine details).
    """
    state, ctx = env.state, image_context(env)
    todo = [m for m in state.candidates() if not m["verified"]]
    if not todo:
        if not state.candidates():
            raise ModelRetry("There are no candidate masks to examine. Call segment_phrase first.")
        ids = format_ids(state.candidate_ids())
        return ToolOutcome(text=f"Every candidate mask has already been examined and accepted: ids {ids}.")
    ctx.raw_image_part()  # encode the shared image once, before the questions are built in parallel
    with env.meter.timing("verify"):
        results = await asyncio.gather(*(verify_mask(ctx, state.query, m, env.meter) for m in todo),
                                       return_exceptions=True)
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        raise failure
    verdicts = {m["id"]: v for m, v in zip(todo, results)}
    masks = [
        {**m, "status": "rejected"} if verdicts.get(m["id"]) is False
        else {**m, "verified": True} if verdicts.get(m["id"]) else m
        for m in state.masks
    ]
    accepted = [i for i, v in verdicts.items() if v is True]
    rejected = [i for i, v in verdicts.items() if v is False]
    unclear = [i for i, v in verdicts.items() if v is None]
    text = render_prompt("after_examine", query=state.query, accepted_ids=format_ids(accepted) if accepted else "none",
                         rejected_ids=format_ids(rejected) if rejected else "none")
    if unclear:
        text += f"\n\nNo clear verdict for ids {format_ids(unclear)}; they stay candidates."
    update = {"masks": masks, "verify_calls": state.verify_calls + len(todo),
              "accepted_ids": [*state.accepted_ids, *accepted]}
    return ToolOutcome(text=text, update=update)


# ----------------------------------------------------------------------------------- final answers


@tool(kind="answer")
async def select_masks_and_return(
    env: ToolEnv,
    mask_ids: Annotated[
        list[int], Field(min_length=1, description="Ids of all masks that make up the answer (from any phrase).")
    ],
) -> ToolOutcome:
    """Give the final answer: the ids of every mask that belongs to what the query asks for, and no others.

    Ids may come from different phrases. This ends the task.
    """
    state = env.state
    valid = state.candidate_ids()
    chosen = list(dict.fromkeys(mask_ids))
    known = set(valid)
    unknown = [i for i in chosen if i not in known]
    if unknown:  # the message names at most SHOWN_IDS of them: the model's list may be long
        rejected = {m["id"] for m in state.masks if m["status"] == "rejected"}
        why = [i for i in unknown if i in rejected][:SHOWN_IDS]
        why_text = f" (ids {format_ids(why)} were rejected by examine_each_mask)" if why else ""
        more = f" and {len(unknown) - SHOWN_IDS} more" if len(unknown) > SHOWN_IDS else ""
        shown = format_ids(valid) if valid else "none: call segment_phrase first"
        count = (f" You gave {len(chosen)} different mask ids but there are only {len(valid)} candidate masks."
                 if len(chosen) > len(valid) else "")
        raise ModelRetry(f"Unknown mask id(s) {format_ids(unknown[:SHOWN_IDS])}{more}{why_text}. Valid ids are "
                         f"{shown}.{count}")
    logger.info("answer: masks %s", chosen)
    return ToolOutcome(text=f"Answer recorded: masks {format_ids(chosen)}.", final=True,
                       update={"answer_ids": chosen, "status": "answered"})


@tool(kind="answer")
async def report_no_mask(env: ToolEnv) -> ToolOutcome:
    """Answer that nothing in the image matches the query.

    Use it only after looking at the image carefully and trying several phrases. This ends the task.
    """
    logger.info("answer: no mask (after phrases %s)", env.state.phrases_tried)
    return ToolOutcome(text="Answer recorded: no matching mask.", final=True,
                       update={"answer_ids": [], "status": "no_mask"})


#: Every image tool, in the order they are offered to the model.
ALL_TOOLS: tuple[Tool, ...] = (segment_phrase, examine_each_mask, select_masks_and_return, report_no_mask)


def tools_for(settings: AgentSettings) -> list[Tool]:
    """The tools offered under ``settings`` (``examine_each_mask`` only when verification is on)."""
    return [t for t in ALL_TOOLS if settings.verification or t.kind != "verify"]
