"""The image medium: the image tools, the raw image with the query, one overlay of the candidate masks.

:data:`IMAGE_MEDIA` is the :class:`~agent.media.base.Media` of every :class:`agent.context.Context`.
The conversation starts with the system prompt and the query with the raw image; the latest
``segment_phrase`` result comes with one overlay of all current candidate masks, numbered by id
(:func:`sam3_core.drawing.render_masks`). Before each model call, the verification questions of the
unexamined candidates are built in the background (:func:`tools.segmentation.prepare_verification`).
"""

from __future__ import annotations

from typing import Any

from agent.context import Context
from agent.state import State, decode_masks
from prompts import render_prompt
from sam3_core.drawing import render_masks
from tools.registry import Tool
from tools.segmentation import prepare_verification, tools_for


def _tool_instructions(ctx: Context) -> str:
    """The system prompt's closing lines: budgets and, in native mode, how calls are made."""
    s = ctx.settings
    lines = [f"You have at most {s.max_steps} replies and {s.max_phrases} different phrases for this query."]
    if s.max_seconds is not None:
        lines.append(f"The query must be answered within {s.max_seconds:g} seconds.")
    if not s.verification:
        lines.append("`examine_each_mask` is not available in this run.")
    if ctx.llm.config.tool_protocol == "native":
        lines.append("Call tools through the function-calling interface, one call per reply.")
    return "\n".join(lines)


def overlay_part(state: State, ctx: Context) -> dict[str, Any] | None:
    """An image part with all current candidate masks, numbered by id; None when there are none."""
    candidates = state.candidates()
    if not candidates:
        return None
    ids = [m["id"] for m in candidates]

    def render() -> Any:
        return render_masks(ctx.image.pixels, decode_masks(candidates, ctx.image.size_hw), ids)

    return ctx.cached_part(("overlay", *ids), render)  # ids never change their mask: render each set once


class ImageMedia:
    """The image agent's :class:`~agent.media.base.Media`: four image tools, the raw image, one overlay."""

    def key(self, ctx: Context) -> str:
        """The content key of the run's image."""
        return ctx.image.key

    def tools(self, ctx: Context) -> list[Tool]:
        """:func:`tools.segmentation.tools_for` the run's settings."""
        return tools_for(ctx.settings)

    def opening(self, state: State, ctx: Context) -> list[dict[str, Any]]:
        """The system prompt, then the query with the raw image."""
        query_part = {"type": "text", "text": render_prompt("user_query", query=state.query)}
        return [
            {"role": "system", "content": render_prompt("system", tool_instructions=_tool_instructions(ctx))},
            {"role": "user", "content": [query_part, ctx.raw_image_part()]},
        ]

    def result_parts(self, state: State, ctx: Context) -> list[dict[str, Any]]:
        """The overlay of all current candidate masks ([] when there are none)."""
        overlay = overlay_part(state, ctx)
        return [overlay] if overlay is not None else []

    def earlier_text(self, state: State) -> str:
        """Tells the model about masks kept from earlier queries on the thread."""
        listed = ", ".join(f'{m["id"]} ("{m["phrase"]}")' for m in state.candidates())
        return (
            "Masks found for earlier queries on this image are still available; the attached overlay shows "
            f"them with their ids: {listed}. If some of them match the query, you may select them directly; "
            "otherwise call segment_phrase."
        )

    def before_model_call(self, state: State, ctx: Context) -> None:
        """Prepare the verification questions in the background (when verification is on)."""
        if ctx.settings.verification:
            prepare_verification(state, ctx)  # in the background, while the overlay is drawn and the model thinks


#: The media hooks of image runs.
IMAGE_MEDIA = ImageMedia()
