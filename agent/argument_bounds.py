"""Bounds on a model's tool-call arguments, checked before they reach the graph state.

The state is checkpointed after every node (msgpack, SQLite on a server), so a value the checkpointer
cannot store -- an integer beyond 64 bits such as ``2**70`` -- or a huge list would end the query in
a traceback or fill the database. :func:`argument_problem` names the first argument out of bounds;
the graph answers it like any invalid call (a retry message, see :mod:`agent.conversation`), so the
arguments never enter the state. :func:`compact_arguments` is the short copy the trace keeps of every
call, valid or not.

Bounds: integers within +-(2**53 - 1) (exact in JSON and JavaScript, well inside 64 bits), finite
numbers, at most :data:`MAX_ITEMS` entries in a list or object, nesting at most :data:`MAX_DEPTH`
deep. A tool's own checks come on top (e.g. mask ids must be ids of candidate masks).
"""

from __future__ import annotations

import math
from typing import Any

#: Largest integer magnitude accepted in arguments.
MAX_INT = 2**53 - 1
#: Most entries of one list or object in the arguments.
MAX_ITEMS = 1000
#: Deepest nesting of lists and objects.
MAX_DEPTH = 8
#: What the trace keeps: string characters, list entries.
TRACE_CHARS = 200
TRACE_ITEMS = 20


def _where(path: str) -> str:
    return path or "(arguments)"


def _scalar_problem(value: Any, path: str) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) > MAX_INT:
        return f"{_where(path)} is a {value.bit_length()}-bit integer; integers must be within +-{MAX_INT}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{_where(path)} is {value}; numbers must be finite"
    return None


def argument_problem(arguments: Any) -> str | None:
    """The first argument out of bounds (see the module docstring), as a message for the model; None if none.

    Iterative, linear in the size of ``arguments``.
    """
    stack: list[tuple[Any, str, int]] = [(arguments, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                return f"{_where(path)} is nested more than {MAX_DEPTH} levels deep"
            if len(value) > MAX_ITEMS:
                return f"{_where(path)} has {len(value)} entries; at most {MAX_ITEMS} are accepted"
            if isinstance(value, dict):
                stack += [(item, f"{path}.{str(key)[:50]}" if path else str(key)[:50], depth + 1)
                          for key, item in value.items()]
            else:
                stack += [(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        elif (problem := _scalar_problem(value, path)) is not None:
            return problem
    return None


def compact_arguments(arguments: Any, depth: int = 0) -> Any:
    """A short, always storable copy of ``arguments`` for the trace (long strings and lists cut, bad numbers
    as text)."""
    if isinstance(arguments, dict):
        if depth >= MAX_DEPTH:
            return "{...}"
        kept = list(arguments.items())[:TRACE_ITEMS]
        out = {str(k)[:TRACE_CHARS]: compact_arguments(v, depth + 1) for k, v in kept}
        if len(arguments) > TRACE_ITEMS:
            out["..."] = f"{len(arguments) - TRACE_ITEMS} more"
        return out
    if isinstance(arguments, list):
        if depth >= MAX_DEPTH:
            return ["..."]
        out_list = [compact_arguments(v, depth + 1) for v in arguments[:TRACE_ITEMS]]
        if len(arguments) > TRACE_ITEMS:
            out_list.append(f"... {len(arguments) - TRACE_ITEMS} more")
        return out_list
    if isinstance(arguments, str):
        return arguments if len(arguments) <= TRACE_CHARS else arguments[:TRACE_CHARS] + "..."
    if _scalar_problem(arguments, "") is not None:
        return f"<{arguments.bit_length()}-bit integer>" if isinstance(arguments, int) else str(arguments)
    return arguments
