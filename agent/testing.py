"""Scripted stand-ins for the multimodal LLM, for the project's tests and benchmarks and for users' own tests.

One script -- a list of :class:`Reply` and/or a ``responder(body)`` that answers a request by its content --
served two ways:

* :class:`ScriptedModel`: in process, no sockets. An httpx transport answers the real ``openai`` client, so
  request building, retries, timeouts and reply parsing of :class:`agent.llm.LLMClient` run as they would
  against a real endpoint. ``model.client()`` gives such a client; pass it wherever an ``LLMClient`` is taken
  (:func:`agent.runner.run_agent`, :func:`eval.runner.run_eval`, ...).
* :class:`ScriptedLLM`: a real OpenAI-compatible HTTP server on 127.0.0.1 (standard library only), for code
  that takes only a URL (the command line, the HTTP API, another process).

Both answer ``POST /v1/chat/completions`` (non-streaming) and ``GET /v1/models``; each chat request gets the
responder's reply or, when it returns None, the next reply of the script. Every request body and its headers
are recorded. When the script runs out (or the responder raises) the request gets HTTP 500 and the problem is
recorded in ``errors``: check that list at the end of a test. Typical use::

    model = ScriptedModel([Reply.text_call("segment_phrase", text_prompt="cat"),
                           Reply.text_call("select_masks_and_return", mask_ids=[1])])
    async with model.client() as llm:
        answer = await run_agent(engine, llm, "cat.jpg", "the cat")
    assert model.remaining == 0 and not model.errors

    with ScriptedLLM(["hello"]) as server:       # the same, over HTTP
        config = server.config()                  # LLMConfig(base_url=server.base_url, model=server.model)

Nothing here imports pytest; the project's fixtures (``scripted_llm``, ``scripted_model``) live in
``tests/conftest.py``.
"""

from __future__ import annotations

from typing import Any

from agent.scripted.http_server import ScriptedLLM
from agent.scripted.in_process import IN_PROCESS_BASE_URL, ScriptedModel, ScriptedTransport
from agent.scripted.reply import Reply, Responder, completion_body

__all__ = [
    "IN_PROCESS_BASE_URL", "Reply", "Responder", "ScriptedLLM", "ScriptedModel", "ScriptedTransport",
    "completion_body", "image_urls", "message_texts",
]


# ---------------------------------------------------------------------- helpers for assertions


def message_texts(body: dict[str, Any], role: str | None = None) -> list[str]:
    """All text of the request's messages (optionally of one role), one string per message."""
    out = []
    for message in body.get("messages", []):
        if role is not None and message.get("role") != role:
            continue
        content = message.get("content") or ""
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
        out.append(content)
    return out


def image_urls(body: dict[str, Any]) -> list[str]:
    """The ``image_url`` URLs (usually data URLs) in the request's messages, in order."""
    return [
        part["image_url"]["url"]
        for message in body.get("messages", [])
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]
