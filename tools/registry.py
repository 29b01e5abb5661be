"""The one tool registry of the agent (image and video tools): typed async functions become tools.

A function's signature becomes its argument schema, its docstring its description.

A tool is an ``async`` function whose first parameter is the :class:`ToolEnv` and whose other
parameters are the model's arguments, each annotated (``Annotated[str, Field(description=...)]`` for
a described argument). :func:`tool` turns it into a :class:`Tool`: a pydantic arguments model is
built from those parameters and, with the docstring, gives the :class:`~agent.tool_protocol.ToolSpec`
that :mod:`agent.tool_protocol` turns into an OpenAI function schema or a text-mode description. The
docstring is shown to the model verbatim, so write it for the model.

Every tool declares its **kind** (:data:`ToolKind`), what it does in the agent loop; the graph routes
by kind, never by name: ``search`` (find candidates: a phrase for SAM 3), ``verify`` (judge the
candidates; runs in the ``verify_masks`` node), ``refine`` (fix one candidate), ``answer`` (end the
query). ``@tool`` alone makes a ``search`` tool; ``@tool(kind="answer")`` another kind.

A tool returns a :class:`ToolOutcome` (the result text and a state update; it never mutates the
state) or raises :class:`~sam3_core.errors.ModelRetry` when the model's call was wrong; the graph
sends that message back to the model as the tool result.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, overload

import pydantic

from agent import tool_protocol as tp
from agent.argument_bounds import argument_problem
from agent.context import RunContext
from agent.state import State
from agent.trace import StepMeter
from sam3_core.errors import ModelRetry, UsageError

#: What a tool does in the agent loop (the router reads it; see the module docstring).
ToolKind = Literal["search", "verify", "refine", "answer"]
TOOL_KINDS: tuple[str, ...] = get_args(ToolKind)


@dataclass(frozen=True)
class ToolEnv:
    """What a tool may read: the run context and the current state (read-only by convention).

    ``meter`` collects the tool's SAM time and LLM usage for the trace (see :mod:`agent.trace`): a tool
    times its engine calls with ``env.meter.timing("sam")`` and counts its LLM replies with
    ``env.meter.count(reply.usage)``.
    """

    context: RunContext
    state: State
    meter: StepMeter = field(default_factory=StepMeter)


@dataclass
class ToolOutcome:
    """What a tool did.

    ``text`` is the result shown to the model, ``update`` the state fields to change. ``prune`` asks the
    graph to restart the pruned conversation from this exchange (``segment_phrase``). ``final`` ends
    the query (the update then sets ``status``).
    """

    text: str
    update: dict[str, Any] = field(default_factory=dict)
    prune: bool = False
    final: bool = False


ToolFunc = Callable[..., Awaitable[ToolOutcome]]


@dataclass(frozen=True)
class Tool:
    """A tool: its spec (name, docstring, arguments model), the function that runs it and its kind."""

    spec: tp.ToolSpec
    func: ToolFunc
    kind: ToolKind = "search"

    @property
    def name(self) -> str:
        """The tool name the model uses."""
        return self.spec.name

    async def run(self, env: ToolEnv, arguments: pydantic.BaseModel | dict[str, Any]) -> ToolOutcome:
        """Validate ``arguments`` if needed and run the tool (ModelRetry on invalid arguments, also on
        arguments out of the bounds of :mod:`agent.argument_bounds`)."""
        if not isinstance(arguments, self.spec.args_model):
            problem = argument_problem(arguments)
            if problem is not None:
                raise ModelRetry(f"Invalid arguments for tool {self.name!r}: {problem}.")
            call = tp.validate_call(tp.ToolCall(self.name, dict(arguments)), [self.spec])
            arguments = call.parsed
        values = {name: getattr(arguments, name) for name in type(arguments).model_fields}
        return await self.func(env, **values)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _make_tool(func: ToolFunc, kind: ToolKind) -> Tool:
    """The :class:`Tool` of ``func`` (see the module docstring)."""
    if kind not in TOOL_KINDS:
        raise UsageError(f"tool {func.__name__!r}: kind must be one of {TOOL_KINDS}, got {kind!r}")
    if not inspect.iscoroutinefunction(func):
        raise UsageError(f"tool {func.__name__!r} must be an async function")
    description = inspect.getdoc(func)
    if not description:
        raise UsageError(f"tool {func.__name__!r} needs a docstring: it is the tool's description")
    hints = typing.get_type_hints(func, include_extras=True)
    params = list(inspect.signature(func).parameters.values())[1:]  # the first one is the ToolEnv
    fields: dict[str, Any] = {}
    for param in params:
        if param.name not in hints:
            raise UsageError(f"tool {func.__name__!r}: parameter {param.name!r} has no type annotation")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints[param.name], default)
    model = pydantic.create_model(f"{_camel(func.__name__)}Args", **fields)
    return Tool(spec=tp.ToolSpec(func.__name__, description, model), func=func, kind=kind)


@overload
def tool(func: ToolFunc, *, kind: ToolKind = "search") -> Tool: ...
@overload
def tool(func: None = None, *, kind: ToolKind = "search") -> Callable[[ToolFunc], Tool]: ...


def tool(func: ToolFunc | None = None, *, kind: ToolKind = "search") -> Tool | Callable[[ToolFunc], Tool]:
    """Make a :class:`Tool` from a typed async function: ``@tool`` (a ``search`` tool) or ``@tool(kind=...)``."""
    if func is None:
        return lambda f: _make_tool(f, kind)
    return _make_tool(func, kind)


def specs(tools: Iterable[Tool]) -> list[tp.ToolSpec]:
    """The specs of ``tools``, for :meth:`agent.llm.LLMClient.chat`."""
    return [t.spec for t in tools]


def by_name(tools: Sequence[Tool]) -> dict[str, Tool]:
    """``{name: tool}``; raises UsageError on a repeated name."""
    table = {t.name: t for t in tools}
    if len(table) != len(tools):
        raise UsageError(f"tool names must be unique, got {[t.name for t in tools]}")
    return table
