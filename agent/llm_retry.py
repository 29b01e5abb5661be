"""The retry policy of :class:`agent.llm.LLMClient`: which SDK errors are worth another attempt, how long to wait
before it, and the message a final failure is raised with.

HTTP 408/429/5xx, timeouts and connection errors are retried (exponential backoff with jitter, ``Retry-After``
honoured up to ``backoff_max_s``); other 4xx fail at once. Every failure gets a ``cause`` for
:class:`~sam3_core.errors.RunFailed` (``llm_unavailable``, ``llm_timeout``, ``llm_rate_limited``, ``llm_rejected``,
``llm_context_overflow``, ``llm_bad_response``) and, where a person must fix something, a hint of what to check.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import openai

from agent.llm_config import LLMConfig

_RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class Failure:
    """One failed attempt, classified: worth retrying?, its ``RunFailed`` cause, what went wrong, and the
    server's ``Retry-After`` in seconds when it sent one."""

    retryable: bool
    cause: str
    detail: str
    retry_after: float | None = None


def _status_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return f"HTTP {exc.status_code}: {message}"
    return f"HTTP {exc.status_code}: {exc.message}"


def classify(exc: openai.APIError, timeout_s: float) -> Failure:
    """Decide whether an SDK error is worth retrying and what to call it."""
    if isinstance(exc, openai.APITimeoutError):
        return Failure(True, "llm_timeout", f"no response within {timeout_s:g}s")
    if isinstance(exc, openai.APIConnectionError):
        return Failure(True, "llm_unavailable", f"connection failed ({exc.__cause__ or exc})")
    if isinstance(exc, openai.APIStatusError):
        status, detail = exc.status_code, _status_detail(exc)
        if status in _RETRYABLE_STATUS or status >= 500:
            retry_after = None
            with contextlib.suppress(ValueError):
                retry_after = float(exc.response.headers.get("retry-after", ""))
            cause = "llm_rate_limited" if status == 429 else "llm_unavailable"
            return Failure(True, cause, detail, retry_after)
        lowered = detail.lower()
        if "context length" in lowered or "maximum context" in lowered or "too long" in lowered:
            return Failure(False, "llm_context_overflow", detail)
        return Failure(False, "llm_rejected", detail)
    return Failure(False, "llm_bad_response", str(exc))


def hint(failure: Failure, config: LLMConfig) -> str:
    """A suggestion of what to check, for failures a person must fix."""
    detail = failure.detail
    if detail.startswith(("HTTP 401", "HTTP 403")):
        return " Check the API key (LLMConfig.api_key or OPENAI_API_KEY)."
    if detail.startswith("HTTP 404"):
        return f" Check base_url (usually ends in /v1) and the model name (GET {config.base_url}/models)."
    if "tool" in detail.lower() and config.tool_protocol == "native":
        return (
            " Native tool calling needs vLLM started with --enable-auto-tool-choice --tool-call-parser "
            "<parser for the model>; or use tool_protocol='text', which needs no server flags."
        )
    if detail.startswith("connection failed"):
        return " Is the server running and reachable at that address?"
    if detail.startswith("HTTP 5"):
        return " The server reported an error; see its log."
    return ""


def backoff_delay(config: LLMConfig, attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before attempt ``attempt + 1``: half the capped exponential step plus up to half of it
    again at random, and at least the server's ``Retry-After`` (itself capped at ``backoff_max_s``)."""
    base = min(config.backoff_max_s, config.backoff_initial_s * 2 ** (attempt - 1))
    delay = base / 2 + rng.uniform(0, base / 2)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, config.backoff_max_s))
    return delay


def failure_message(failure: Failure, config: LLMConfig, what: str, model: str | None, attempts: int) -> str:
    """The message of the :class:`~sam3_core.errors.RunFailed` raised when ``what`` cannot be done: the endpoint,
    the model, the attempts made (for a retryable failure), what went wrong and what to check."""
    tries = f" after {attempts} attempt(s)" if failure.retryable else ""
    return (f"LLM endpoint {config.base_url} failed to {what} (model {model or '?'}){tries}: "
            f"{failure.detail}.{hint(failure, config)}")
