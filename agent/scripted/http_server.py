"""The script served over HTTP (:class:`ScriptedLLM`): a standard-library server on 127.0.0.1 in a background
thread, for code that takes only a URL (the command line, the HTTP API, another process)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.scripted.reply import Reply, Responder
from agent.scripted.script import Script

logger = logging.getLogger("agent.testing")  # the public module's name: one logger for all the scripted parts


class _Server(ThreadingHTTPServer):
    """A listen backlog like a real server's: the default of 5 drops connections when many verification
    calls arrive at once, and the client then waits a second to retry."""

    request_queue_size = 1024
    daemon_threads = True


class ScriptedLLM(Script):
    """The script served over HTTP on 127.0.0.1; a context manager (``start``/``stop``). Thread-safe."""

    def __init__(self, script: Iterable[Reply | str] = (), *, responder: Responder | None = None,
                 model: str = "scripted-model", keep_alive: bool = False) -> None:
        """``keep_alive``: serve HTTP/1.1 and keep each connection open for the client's next request, as a
        real model server does (benchmarks); by default every reply closes its connection (HTTP/1.0), so
        that a stopped server is unreachable at once (tests of endpoints going down)."""
        super().__init__(script, responder=responder, model=model)
        self.keep_alive = keep_alive
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` of the server (kept after ``stop`` for assertions)."""
        if self._port is None:
            raise RuntimeError("ScriptedLLM was never started")
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> ScriptedLLM:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._server.block_on_close = not self.keep_alive  # an open connection's thread waits for its client
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="ScriptedLLM", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed replies still waiting are abandoned."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    """Serves one request for the :class:`ScriptedLLM` in ``scripted`` (set per server by a subclass)."""

    scripted: ScriptedLLM

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("ScriptedLLM: " + format, *args)

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.scripted._route(self.command, self.path, raw, headers)
        if answer.delay_s and self.scripted._stopping.wait(answer.delay_s):
            self.close_connection = True
            return  # the server is stopping: abandon the delayed reply
        data = answer.body.encode()
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            logger.debug("ScriptedLLM: client closed the connection before the reply")

    do_GET = do_POST = _serve


def _make_handler(server: ScriptedLLM) -> type[BaseHTTPRequestHandler]:
    """A request-handler class bound to ``server``."""
    protocol = "HTTP/1.1" if server.keep_alive else "HTTP/1.0"
    return type("ScriptedLLMHandler", (_Handler,), {"scripted": server, "protocol_version": protocol})
