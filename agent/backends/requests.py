"""The constraint part of a chat request: which grammar a call must follow, and how a server is told.

:func:`call_grammar` turns the tools offered and the current :class:`~agent.tool_protocol.CallChoices`
into a :class:`~agent.backends.grammar.CallGrammar` (or None when nothing is constrained);
:func:`server_grammar_fields` puts it into a vLLM request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent import tool_protocol as tp
from sam3_core.errors import UsageError

if TYPE_CHECKING:
    from agent.llm_config import LLMConfig

#: Tokens a constrained reply keeps for the call after its free text (a call is rarely over 100 tokens).
CALL_TOKENS = 200


def call_grammar(config: LLMConfig, specs: Sequence[tp.ToolSpec], choices: tp.CallChoices | None,
                 max_tokens: int) -> Any:
    """The :class:`~agent.backends.grammar.CallGrammar` for a text-protocol request, or None (constraints
    off, native protocol, no tools, or no tool callable under ``choices``). The prose budget leaves
    :data:`CALL_TOKENS` of the reply's ``max_tokens`` for the call itself."""
    if config.constrained == "off" or config.tool_protocol != "text" or not specs:
        return None
    from agent.backends.grammar import CallGrammar, call_schema

    try:
        budget = min(config.max_prose_tokens, max(0, max_tokens - CALL_TOKENS))
        return CallGrammar(call_schema(specs, choices), budget)
    except UsageError:
        return None


def server_grammar_fields(grammar: Any) -> dict[str, Any]:
    """Request fields that make a vLLM server follow ``grammar``: ``structured_outputs.grammar`` (vLLM 0.10.2
    and later; 0.33's ``ChatCompletionRequest.structured_outputs``). The older ``guided_grammar`` is not
    sent: vLLM 0.12 removed it, and a current server logs that a request carrying it is not constrained."""
    return {"structured_outputs": {"grammar": grammar.ebnf()}}


def about_grammar(message: str) -> bool:
    """Whether an endpoint's error message is about the grammar fields (then it is sent again without)."""
    lowered = message.lower()
    return any(word in lowered for word in ("structured_output", "guided", "grammar", "unrecognized", "extra"))
