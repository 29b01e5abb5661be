"""The interface between :class:`agent.llm.LLMClient` and whatever produces completions.

A backend takes one chat request (the keyword arguments of an OpenAI ``chat.completions.create`` call:
``messages``, ``temperature``, ``max_tokens``, optionally ``tools`` and ``extra_body``, plus ``grammar``:
a :class:`~agent.backends.grammar.CallGrammar` or None) and returns an object shaped like an OpenAI
``ChatCompletion`` (``choices[0].message.content`` / ``.tool_calls``, ``choices[0].finish_reason``,
``usage``). The client parses the reply, counts usage and times the call the same way for every backend.
In-process backends build their completions from the small dataclasses below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.llm import Usage


class Backend(Protocol):
    """Produces chat completions; raises :class:`~sam3_core.errors.RunFailed` when it cannot."""

    #: Where the model runs, for messages ("http://host:8000/v1", "hf:/models/qwen", ...).
    description: str

    async def model_name(self) -> str:
        """The model answering."""
        ...

    async def complete(self, request: dict[str, Any], usage: Usage) -> Any:
        """One completion for ``request``; retries and failures are counted in ``usage``."""
        ...

    async def aclose(self) -> None:
        """Release what the backend holds (connections; an in-process model stays loaded until dropped)."""
        ...


@dataclass
class Message:
    """An assistant message produced in process (``tool_calls`` stays None: calls are in the text)."""

    content: str
    tool_calls: None = None
    reasoning_content: str | None = None


@dataclass
class Choice:
    """One generated reply; ``finish_reason`` is ``"stop"`` (end token) or ``"length"`` (max_tokens)."""

    message: Message
    finish_reason: str


@dataclass
class TokenCounts:
    """Token counts of one completion, as an OpenAI ``usage`` object has them."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int = 0

    def __post_init__(self) -> None:
        self.total_tokens = self.total_tokens or self.prompt_tokens + self.completion_tokens


@dataclass
class Completion:
    """A completion made in process, shaped like OpenAI's ``ChatCompletion``."""

    choices: list[Choice]
    usage: TokenCounts
    #: Seconds spent masking tokens under the grammar (0 when unconstrained), for benchmarks.
    grammar_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
