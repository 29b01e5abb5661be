"""One scripted answer of the stand-in LLM (:class:`Reply`) and the ``chat.completion`` JSON sent for it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Answers a chat request by its body: a reply, a text (a plain reply), or None for the script's next reply.
Responder = Callable[[dict[str, Any]], "Reply | str | None"]


@dataclass
class Reply:
    """One scripted answer.

    ``status`` other than 200 sends an OpenAI-style error body with ``error_message``. ``delay_s``
    waits before answering (longer than the client's timeout simulates a timeout; the reply is still
    consumed). ``tool_calls`` entries are ``{"name", "arguments" (dict or raw string), "id"?}``.
    ``raw_body`` is sent verbatim instead of a generated body.
    """

    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error_message: str = "scripted error"
    delay_s: float = 0.0
    finish_reason: str | None = None
    prompt_tokens: int = 10
    completion_tokens: int = 5
    headers: dict[str, str] = field(default_factory=dict)
    message_extra: dict[str, Any] = field(default_factory=dict)
    raw_body: str | None = None

    @classmethod
    def text(cls, content: str, **kw: Any) -> Reply:
        """A plain assistant message."""
        return cls(content=content, **kw)

    @classmethod
    def call(cls, name: str, _id: str | None = None, **arguments: Any) -> Reply:
        """A native tool call (``message.tool_calls``; for ``tool_protocol="native"``)."""
        return cls(tool_calls=[{"name": name, "arguments": arguments, "id": _id}])

    @classmethod
    def text_call(cls, name: str, **arguments: Any) -> Reply:
        """A tool call in the text protocol (the default): ``<tool_call>{"name", "arguments"}</tool_call>``."""
        return cls(content=f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")

    @classmethod
    def error(cls, status: int, message: str = "scripted error", **kw: Any) -> Reply:
        """An HTTP error response."""
        return cls(status=status, error_message=message, **kw)


def _tool_call_json(call: dict[str, Any], index: int) -> dict[str, Any]:
    args = call.get("arguments", {})
    return {
        "id": call.get("id") or f"call_{uuid.uuid4().hex[:8]}_{index}",
        "type": "function",
        "function": {"name": call["name"], "arguments": args if isinstance(args, str) else json.dumps(args)},
    }


def completion_body(reply: Reply, model: str) -> dict[str, Any]:
    """The ``chat.completion`` JSON for a successful scripted reply."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, **reply.message_extra}
    if reply.tool_calls:
        message["tool_calls"] = [_tool_call_json(c, i) for i, c in enumerate(reply.tool_calls)]
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }
