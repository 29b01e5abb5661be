"""The per-mask verification question of ``examine_each_mask`` and its answer: the question (the prompt, the raw
image, the mask alone, a close-up) built ahead in a background thread while the model thinks
(:func:`prepare_verification`), asked with :func:`verify_mask`, and the verdict read by :func:`parse_verdict`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from concurrent.futures import Future
from typing import Any

from agent import tool_protocol as tp
from agent.context import Context
from agent.state import MaskRecord, State
from agent.trace import StepMeter
from prompts import render_prompt
from sam3_core.drawing import render_single_mask, zoomed_crop
from sam3_core.postprocess import rle_to_mask

logger = logging.getLogger(__name__)

_VERDICT = re.compile(r"\b(accept|reject)(?:ed|s)?\b", re.IGNORECASE)


def parse_verdict(text: str) -> bool | None:
    """True for Accept, False for Reject, None when unclear: the last line decides, else the last verdict word."""
    visible, _ = tp.split_reasoning(text or "")
    lines = [line.strip(" \t*_`.!:#>-\"'") for line in visible.splitlines()]
    lines = [line.lower() for line in lines if line]
    if lines:
        last = lines[-1].removeprefix("verdict").strip(" :")
        if last.startswith("accept"):
            return True
        if last.startswith("reject"):
            return False
    words = _VERDICT.findall(visible)
    return None if not words else words[-1].lower() == "accept"


def _verify_content(ctx: Context, query: str, record: MaskRecord) -> list[dict[str, Any]]:
    """The verification question: the prompt, the raw image, the mask alone and a close-up of it."""
    pixels, mask_id = ctx.image.pixels, record["id"]
    mask = rle_to_mask(record["rle"])
    return [
        {"type": "text", "text": render_prompt("verify_mask", query=query, mask_id=mask_id)},
        ctx.raw_image_part(),
        ctx.image_part(render_single_mask(pixels, mask, mask_id, anchor=ctx.cache.get(anchor_key(mask_id)))),
        ctx.image_part(zoomed_crop(pixels, mask)),
    ]


def anchor_key(mask_id: int) -> tuple[str, int]:
    """The ``ctx.cache`` key of a mask's label anchor (kept by the overlay, reused by the verification render)."""
    return ("label_anchor", mask_id)


def _question_key(query: str, mask_id: int) -> tuple[str, str, int]:
    """The ``ctx.cache`` key of a prepared verification question."""
    return ("verify_question", query, mask_id)


def prepare_verification(state: State, ctx: Context) -> None:
    """Start building the verification questions of the unexamined candidates in a background thread.

    The image medium calls this before every main-loop call, once the overlay is drawn, so the questions
    are built while the model thinks: if the model then calls ``examine_each_mask``, most questions
    are ready and little more than the LLM's latency remains. Each candidate's question is built at most
    once per query (a future in ``ctx.cache``); one thread builds them one after another, and
    ``examine_each_mask`` builds any the thread has not started yet itself.
    """
    todo = [m for m in state.candidates() if not m["verified"] and _question_key(state.query, m["id"]) not in ctx.cache]
    if not todo:
        return
    futures = [ctx.cache.setdefault(_question_key(state.query, m["id"]), Future()) for m in todo]

    def build() -> None:
        for record, future in zip(todo, futures):
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(_verify_content(ctx, state.query, record))
            except Exception as exc:  # verify_mask builds it again and reports the error
                future.set_exception(exc)

    threading.Thread(target=build, name="verify-prepare", daemon=True).start()


async def _question(ctx: Context, query: str, record: MaskRecord) -> list[dict[str, Any]]:
    """The verification question of ``record``: the prepared one if the thread started it, else built now."""
    future = ctx.cache.get(_question_key(query, record["id"]))
    if isinstance(future, Future) and future.cancel():  # not started by the thread yet: build it here instead
        return _verify_content(ctx, query, record)
    if isinstance(future, Future) and not future.cancelled():
        try:
            return await asyncio.wrap_future(future)
        except Exception:
            logger.debug("preparing the question of mask %d failed; building it again", record["id"], exc_info=True)
    return _verify_content(ctx, query, record)


async def verify_mask(ctx: Context, query: str, record: MaskRecord, meter: StepMeter | None = None) -> bool | None:
    """Ask the LLM whether one mask matches the query (raw image, that mask alone, a close-up).

    Returns True (accept), False (reject) or None (no clear verdict); the reply's usage is counted in
    ``meter`` when given.
    """
    content = await _question(ctx, query, record)
    reply = await ctx.llm.chat([{"role": "user", "content": content}])
    if meter is not None:
        meter.count(reply.usage)
    verdict = parse_verdict(reply.content)
    logger.info("examine mask %d: %s", record["id"], {True: "accept", False: "reject", None: "unclear"}[verdict])
    return verdict
