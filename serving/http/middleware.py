"""ASGI middleware of the API: the bearer-token check, the request body limit and the last-resort 500 (all JSON)."""

from __future__ import annotations

import logging
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.http.errors import TooLarge, classify, error_response

logger = logging.getLogger(__name__)


class BearerAuthMiddleware:
    """Refuses ``/v1/*`` requests without the right bearer token (401) before their body is read."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self._token = app, token.encode()

    def _authorized(self, scope: Scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, value = header.partition(b" ")
        return scheme.lower() == b"bearer" and secrets.compare_digest(value.strip(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/") and not self._authorized(scope):
            response = error_response(401, "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
                                      headers={"WWW-Authenticate": 'Bearer realm="sam3-agent"'})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """HTTP 413 for bodies over ``max_bytes``: at once from ``Content-Length``, else while the body is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> str:
        return f"the request body is over this server's limit of {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(413, self._message(), "too_large")(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise TooLarge(self._message())  # answered as JSON by the app's error handler
            return message

        await self.app(scope, counted, send)


class CatchAllMiddleware:
    """Answers an unexpected exception with a JSON 500 and keeps the connection usable.

    Without it the exception would reach uvicorn, which closes the connection after Starlette's
    500 (clients with keep-alive then see a reset). The traceback goes to the log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            error = classify(exc)  # logs the traceback of unexpected errors
            if started:
                logger.error("%s failed after its response started", scope.get("path"))
                return
            await error_response(error.status, error.message, error.code)(scope, receive, send)
