"""What a constrained tool call may contain in the current state of a query.

Used only to build the grammar of a constrained reply (:class:`agent.tool_protocol.CallChoices`); the
tools still validate every call themselves. Ids are restricted to the current candidates; a tool that
needs a candidate (an id argument, or ``examine_each_mask``) is left out while there is none, and
``segment_phrase`` once the phrase budget is used up. In a video run, frame indices are restricted to the
clip's frames (``0 .. num_frames - 1``).
"""

from __future__ import annotations

from collections.abc import Sequence

from agent import tool_protocol as tp
from agent.settings import AgentSettings
from agent.state import State

#: Argument names that take the ids of current candidates (masks, or masklets for videos).
ID_ARGUMENTS: tuple[str, ...] = ("mask_ids", "masklet_ids", "masklet_id")
#: Tools that need at least one candidate although they take no id.
_NEEDS_CANDIDATES = frozenset({"examine_each_mask"})
#: Argument names that take a frame index of the run's video.
FRAME_ARGUMENTS: tuple[str, ...] = ("frame_index",)
#: The argument that names a new phrase (counted against ``max_phrases``).
_PHRASE_ARGUMENT = "text_prompt"


def call_choices(state: State, settings: AgentSettings, specs: Sequence[tp.ToolSpec], *,
                 num_frames: int | None = None) -> tp.CallChoices:
    """The tools callable now, the ids they may name and, for a video of ``num_frames`` frames (None: not
    a video), the frame indices (see the module docstring)."""
    ids = tuple(state.candidate_ids())
    callable_now = []
    for spec in specs:
        arguments = spec.args_model.model_fields
        needs_candidate = spec.name in _NEEDS_CANDIDATES or any(name in arguments for name in ID_ARGUMENTS)
        if needs_candidate and not ids:
            continue
        if _PHRASE_ARGUMENT in arguments and len(state.phrases_tried) >= settings.max_phrases:
            continue
        callable_now.append(spec.name)
    ranges = dict.fromkeys(FRAME_ARGUMENTS, (0, num_frames - 1)) if num_frames is not None else {}
    return tp.CallChoices(tools=tuple(callable_now), values=dict.fromkeys(ID_ARGUMENTS, ids), ranges=ranges)
