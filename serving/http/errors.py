"""Every error of the HTTP API as JSON: ``{"error": {"status", "code", "message", "details"?}}``.

Statuses: 400 bad input (:class:`~sam3_core.errors.InputError`), 401 missing or wrong bearer token,
403 a cross-site request to a token-less server, 404 unknown conversation, 408 a body that arrived too
slowly, 409 a thread continued with another image, 413 a body or image over the limits (``over_budget``:
work over the engine's admission budget), 422 a request that does not match its schema, 502 the LLM
endpoint failed, 503 the model is not loaded yet, no LLM is configured or the state database is
unusable, 504 the request ran past its timeout.

Messages from lower layers pass :func:`redact`: clients learn what was wrong, never an internal URL or
a path on the server.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sam3_core.errors import InputError, RunFailed, UsageError

logger = logging.getLogger(__name__)

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          408: "request_timeout",
          409: "conflict", 413: "too_large", 422: "validation_error", 502: "bad_gateway",
          503: "not_ready", 504: "timeout"}


class ApiError(Exception):
    """An error with its HTTP status; ``code`` is a short machine-readable name."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or _CODES.get(status, "error")
        self.headers = headers


class TooLarge(ApiError):
    """A body, an image or a fetched URL over its size or pixel limit (HTTP 413)."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class NotReady(ApiError):
    """The model (or the LLM) is not available yet (HTTP 503)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message, headers={"Retry-After": "5"})


class Timeout(ApiError):
    """The request ran past its time limit (HTTP 504)."""

    def __init__(self, message: str) -> None:
        super().__init__(504, message)


def error_body(status: int, message: str, code: str | None = None, details: Any = None) -> dict[str, Any]:
    """The JSON error document."""
    error: dict[str, Any] = {"status": status, "code": code or _CODES.get(status, "error"), "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(status: int, message: str, code: str | None = None, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, details), status_code=status, headers=headers)


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_PATH = re.compile(r"(?<![\w<>])~?(?:/[^\s/'\":,;()<>]+){2,}/?")
#: sqlite errors that mean the state file itself is damaged or unwritable (not a busy moment).
_BROKEN_DB = ("malformed", "not a database", "readonly", "disk i/o error", "unable to open", "no such table")


def redact(text: str) -> str:
    """``text`` without URLs and file paths (an internal LLM address, a temp folder, the model's path):
    messages of lower layers are shown to clients, who need the reason, not the server's layout."""
    return _PATH.sub("<path>", _URL.sub("<url>", text))


def broken_database(exc: BaseException) -> bool:
    """Whether an sqlite error says the state database is unusable (rather than briefly locked)."""
    return isinstance(exc, sqlite3.Error) and any(word in str(exc).lower() for word in _BROKEN_DB)


def _admission(exc: BaseException) -> ApiError | None:
    """The engine's admission refusal (work over its budget) as HTTP 413, naming the limit.

    Recognised by name (``...AdmissionError`` / ``...BudgetError``) or by a ``limit`` attribute, so the
    serving layer does not depend on where in ``sam3_core`` the error class lives."""
    name = type(exc).__name__
    if name.endswith(("AdmissionError", "BudgetError")) or (isinstance(exc, InputError) and hasattr(exc, "limit")):
        return ApiError(413, redact(str(exc)), "over_budget")
    return None


def classify(exc: BaseException) -> ApiError:
    """The :class:`ApiError` an exception maps to (used by the handlers and by the SSE stream)."""
    if isinstance(exc, ApiError):
        return exc
    if (admission := _admission(exc)) is not None:
        return admission
    if isinstance(exc, InputError):
        return ApiError(400, redact(str(exc)), "bad_input")
    if isinstance(exc, UsageError) and "belongs to another image" in str(exc):
        return ApiError(409, redact(str(exc)), "thread_image_mismatch")
    if isinstance(exc, RunFailed):
        status = 504 if exc.cause == "llm_timeout" else 502
        logger.warning("LLM endpoint failure: %s", exc)
        return ApiError(status, f"the LLM endpoint failed ({exc.cause}): {redact(str(exc))}", exc.cause)
    if isinstance(exc, sqlite3.Error):
        logger.error("state database error: %s", exc)
        return ApiError(503, "the state database failed; see GET /readyz", "state_db")
    if isinstance(exc, TimeoutError):
        return Timeout("the request ran past its time limit")
    logger.exception("unexpected error", exc_info=exc)
    return ApiError(500, f"internal error ({type(exc).__name__}); see the server log", "internal")


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    if broken_database(exc):  # readiness turns 503 until the file is repaired and the server restarted
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None and not runtime.state_error:
            runtime.state_error = f"{type(exc).__name__}: {redact(str(exc))}"
    error = classify(exc)
    if error.status >= 500:
        logger.warning("%s %s -> %d %s", request.method, request.url.path, error.status, error.message)
    return error_response(error.status, error.message, error.code, headers=error.headers)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
    if exc.status_code == 413:
        message = "the request body is larger than this server accepts"
    return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
    first = details[0] if details else {}
    where = ".".join(str(p) for p in first.get("loc", []))
    message = f"invalid request: {where}: {first.get('msg', 'does not match the schema')}"
    return error_response(422, message, details=details)


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    for kind in (ApiError, InputError, RunFailed, UsageError, TimeoutError, sqlite3.Error):
        app.add_exception_handler(kind, _api_error)
