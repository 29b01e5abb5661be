"""ASGI guards against hostile browsers and slow clients: the same-origin check of a token-less server and
the deadline for reading a request body.

A server without a token listens on localhost for its user, but any web page the user opens could post
to it: browsers send cross-site ``POST``s (a form, ``fetch`` with ``mode: "no-cors"``) without asking.
They also say where the request comes from, in ``Sec-Fetch-Site`` and ``Origin``, and a page cannot
forge those. :class:`SameOriginGuard` refuses state-changing requests that carry either header and do
not come from the server's own origin; clients that are not browsers (curl, the Python client, other
services) send neither and pass. The chat page is served by the same app, so it is same-origin.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.http.errors import ApiError, error_response

#: Methods that read only; everything else may change state and is checked.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME = {b"same-origin", b"none"}


def _own_origin(scope: Scope, headers: dict[bytes, bytes]) -> bytes:
    scheme = str(scope.get("scheme", "http")).encode()
    return scheme + b"://" + headers.get(b"host", b"").lower()


def cross_site_reason(scope: Scope) -> str | None:
    """Why this request looks cross-site (None when it is same-origin or not from a browser)."""
    headers = dict(scope.get("headers") or [])
    fetch_site = headers.get(b"sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in _SAME:
        return f"Sec-Fetch-Site is {fetch_site.decode('latin-1')[:20]!r}"
    origin = headers.get(b"origin")
    if origin is not None and origin.lower() != _own_origin(scope, headers):
        return "its Origin is not this server"
    return None


class SameOriginGuard:
    """HTTP 403 for a state-changing ``/v1/*`` request a browser sent from another site (no token set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and scope["path"].startswith("/v1/"):
            reason = cross_site_reason(scope)
            if reason is not None:
                message = (f"cross-site request refused ({reason}): this server has no token, so only pages it "
                           "serves itself may post to it (start it with a token to allow other clients)")
                await error_response(403, message, "cross_site")(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyDeadline:
    """HTTP 408 when a request body has not fully arrived ``seconds`` after its headers (a trickling client
    would otherwise hold its connection and its handler for ever)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        body_done = False

        async def bounded() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()  # after the body: the disconnect notice, which may come late
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.001))
            except TimeoutError:
                raise ApiError(408, f"the request body did not arrive within {self.seconds:g}s",
                               "body_timeout") from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, bounded, send)
