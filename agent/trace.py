"""The step-by-step trace of a query: what every node did and where its time went.

Every node run of the graph (``call_model``, ``run_tool``, ``verify_masks``) appends one **record** to
``State.trace``, a plain JSON dict (the checkpointer stores it)::

    {"index": 0, "step": 1, "node": "call_model", "tool": "segment_phrase",
     "arguments": {"text_prompt": "cup"}, "outcome": "call", "detail": "",
     "start_s": 0.004, "total_s": 0.215, "model_s": 0.208, "sam_s": 0.0, "verify_s": 0.0,
     "overhead_s": 0.007, "model_calls": 1, "tokens": 15, "prompt_tokens": 10, "completion_tokens": 5}

* ``index``: position in the trace; ``step``: the main-loop step the record belongs to (for
  ``call_model`` the reply it asks for, also when none comes: a limit, a failure).
* ``node``: the graph node; ``tool`` and ``arguments``: the tool call chosen (``call_model``) or run
  (the tool nodes); ``tool`` is None when the reply made no usable call.
* ``outcome``: ``call`` (a valid call was chosen), ``ok`` (the tool ran), ``final`` (the tool answered
  the query), ``retry`` (the reply or call was invalid: the model is told why and asked again),
  ``limit`` (a limit ended the query), ``failed`` (the LLM endpoint failed, or too many retries).
  ``detail``: the retry message, the limit or the failure, cut to 300 characters.
* ``start_s``: when the node started, seconds after the query started. ``total_s``: the node's duration.
* ``model_s``: time spent waiting for the LLM -- the main-loop call's latency, or the wall time of
  the concurrent verification batch; ``verify_s``: the verification part of ``model_s``.
* ``sam_s``: time inside SAM 3 engine calls. ``overhead_s = total_s - model_s - sam_s``: the agent's own
  work (prompt building, overlays, image encoding, mask bookkeeping).
* ``model_calls``/``tokens``/``prompt_tokens``/``completion_tokens``: LLM replies received and their usage.

:func:`totals` sums a trace into the per-query **timings** (``State.timings``, ``AgentAnswer.timings``):
``wall_s`` (query start to end), ``model_s``, ``sam_s``, ``verify_s``, ``overhead_s``
(``wall_s - model_s - sam_s``: everything that is neither model nor SAM, graph and checkpointing
included), ``step_overhead_s`` (the part of that inside nodes), ``model_calls``, ``tokens``,
``prompt_tokens``, ``completion_tokens``, ``steps`` (main-loop replies received) and ``records``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.llm import Usage

TimedPart = Literal["model", "sam", "verify"]
Outcome = Literal["call", "ok", "final", "retry", "limit", "failed"]

_DETAIL_CHARS = 300
_DIGITS = 6
#: Timing keys of a record that :func:`totals` sums.
_SUMMED = ("model_s", "sam_s", "verify_s", "overhead_s")
_COUNTED = ("model_calls", "tokens", "prompt_tokens", "completion_tokens")


def _round(value: float) -> float:
    """Seconds rounded to microseconds, never negative."""
    return round(max(0.0, value), _DIGITS)


@dataclass
class StepMeter:
    """Collects the model time, SAM time and LLM usage of one node run (one trace record).

    Time a part with ``with meter.timing("sam"): ...``; count an LLM reply's usage with
    :meth:`count`. ``verify`` time is model time too (it is added to both).
    """

    model_s: float = 0.0
    sam_s: float = 0.0
    verify_s: float = 0.0
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)

    @contextlib.contextmanager
    def timing(self, part: TimedPart) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``part`` (also when it raises)."""
        begin = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - begin
            if part == "sam":
                self.sam_s += elapsed
            else:
                self.model_s += elapsed
                if part == "verify":
                    self.verify_s += elapsed

    def count(self, usage: Usage) -> None:
        """Count one LLM reply and its tokens."""
        self.model_calls += 1
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.tokens += usage.total_tokens or usage.prompt_tokens + usage.completion_tokens

    def record(self, *, index: int, step: int, node: str, tool: str | None, arguments: dict[str, Any] | None,
               outcome: Outcome, detail: str = "", query_started: float = 0.0) -> dict[str, Any]:
        """The trace record of this node run, ending now (see the module docstring for the keys)."""
        total = time.perf_counter() - self.started
        start = time.time() - total - query_started if query_started > 0 else 0.0
        return {
            "index": index, "step": step, "node": node, "tool": tool, "arguments": dict(arguments or {}),
            "outcome": outcome, "detail": detail[:_DETAIL_CHARS],
            "start_s": _round(start), "total_s": _round(total), "model_s": _round(self.model_s),
            "sam_s": _round(self.sam_s), "verify_s": _round(self.verify_s),
            "overhead_s": _round(total - self.model_s - self.sam_s),
            "model_calls": self.model_calls, "tokens": self.tokens, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def used_tokens(trace: Sequence[dict[str, Any]]) -> int:
    """LLM tokens used so far by the query (main loop and verification)."""
    return sum(int(r.get("tokens", 0)) for r in trace)


def totals(trace: Sequence[dict[str, Any]], wall_s: float | None = None) -> dict[str, Any]:
    """The per-query timings of ``trace`` (see the module docstring).

    ``wall_s`` is the query's wall time; when None (unknown) the sum of the records' ``total_s`` is used.
    """
    summed = {key: sum(float(r.get(key, 0.0)) for r in trace) for key in _SUMMED}
    steps_total = sum(float(r.get("total_s", 0.0)) for r in trace)
    wall = steps_total if wall_s is None else wall_s
    out: dict[str, Any] = {
        "wall_s": _round(wall), "model_s": _round(summed["model_s"]), "sam_s": _round(summed["sam_s"]),
        "verify_s": _round(summed["verify_s"]),
        "overhead_s": _round(wall - summed["model_s"] - summed["sam_s"]),
        "step_overhead_s": _round(summed["overhead_s"]),
    }
    out.update({key: sum(int(r.get(key, 0)) for r in trace) for key in _COUNTED})
    out["steps"] = sum(1 for r in trace if r.get("node") == "call_model" and int(r.get("model_calls", 0)) > 0)
    out["records"] = len(trace)
    return out


def overhead_per_step(trace: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean and max ``overhead_s`` over the records of ``trace`` (zeros for an empty trace)."""
    values = [float(r.get("overhead_s", 0.0)) for r in trace]
    if not values:
        return {"mean_s": 0.0, "max_s": 0.0}
    return {"mean_s": _round(sum(values) / len(values)), "max_s": _round(max(values))}
