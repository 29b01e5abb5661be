"""Running an app with uvicorn: in the foreground (the CLI) or on a background thread (tests, benchmarks).

Both run uvicorn's h11 protocol with a header deadline (:class:`HeaderDeadlineProtocol`): a connection
that has not sent a complete request head ``header_timeout_s`` after it opened, or after its previous
response, is closed. uvicorn's own keep-alive timer stops at the first byte, so a client trickling a
header a byte at a time would otherwise keep its connection for ever. ``max_connections`` caps the
connections served at once (uvicorn answers 503 above it).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request head is not complete in time."""

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            logger.info("closing a connection whose request headers took over %gs", self.header_timeout_s)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request head was parsed: the handler's own limits take over
            self._disarm()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            # The next request on this keep-alive connection gets the same deadline. Armed first: the
            # call below may parse a pipelined request at once, and handle_events then disarms it.
            self._arm()
        super().on_response_complete()


def protocol_with(header_timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """A :class:`HeaderDeadlineProtocol` class with its deadline (uvicorn builds the instances itself)."""
    return type("HeaderDeadline", (HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s})


def _limits(app: FastAPI) -> dict[str, Any]:
    """uvicorn settings from the app's :class:`~serving.config.ServeSettings` (defaults when it has none)."""
    settings = getattr(getattr(app.state, "runtime", None), "settings", None)
    header_s = getattr(settings, "header_timeout_s", 10.0)
    return {"http": protocol_with(header_s), "limit_concurrency": getattr(settings, "max_connections", 1000),
            "timeout_keep_alive": 5, "h11_max_incomplete_event_size": 64 * 1024}


def serve_forever(app: FastAPI, host: str, port: int, *, log_level: str = "info") -> None:
    """Serve ``app`` until interrupted (Ctrl-C or SIGTERM shut it down gracefully)."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10,
                            proxy_headers=False, server_header=False, **_limits(app))
    uvicorn.Server(config).run()


class BackgroundServer:
    """Serve an app on ``127.0.0.1`` and a free port, from a daemon thread; a context manager.

    ``base_url`` is ``http://127.0.0.1:<port>``. Entering waits until uvicorn has started (the app's
    start-up included); leaving shuts it down and waits for the thread.
    """

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", start_timeout_s: float = 60.0) -> None:
        self.app = app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5,
                                server_header=False, **_limits(app))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=f"uvicorn-{self.port}", daemon=True)
        self._start_timeout_s = start_timeout_s

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.base_url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
