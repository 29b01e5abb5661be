"""Every error of the HTTP API as JSON: ``{"error": {"status", "code", "message", "details"?}}``.

Statuses: 400 bad input (:class:`~sam3_core.errors.InputError`), 401 missing or wrong bearer token,
404 unknown conversation, 409 a thread continued with another image, 413 a body or image over the
limits, 422 a request that does not match its schema, 502 the LLM endpoint failed, 503 the model is
not loaded yet (or no LLM is configured), 504 the request ran past its timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sam3_core.errors import InputError, RunFailed, UsageError

logger = logging.getLogger(__name__)

_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
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


def classify(exc: BaseException) -> ApiError:
    """The :class:`ApiError` an exception maps to (used by the handlers and by the SSE stream)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InputError):
        return ApiError(400, str(exc), "bad_input")
    if isinstance(exc, UsageError) and "belongs to another image" in str(exc):
        return ApiError(409, str(exc), "thread_image_mismatch")
    if isinstance(exc, RunFailed):
        status = 504 if exc.cause == "llm_timeout" else 502
        return ApiError(status, f"the LLM endpoint failed: {exc}", exc.cause)
    if isinstance(exc, TimeoutError):
        return Timeout("the request ran past its time limit")
    logger.exception("unexpected error", exc_info=exc)
    return ApiError(500, f"internal error ({type(exc).__name__}); see the server log", "internal")


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
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
    for kind in (ApiError, InputError, RunFailed, UsageError, TimeoutError):
        app.add_exception_handler(kind, _api_error)
