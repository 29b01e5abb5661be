"""The serving sub-commands of ``sam3-agent``: ``serve`` (HTTP API), ``chat`` (the same, for the chat page)
and ``mcp`` (an MCP server for other agents).

Wire them into a parser with :func:`add_serving_commands`; ``python -m cli.serve`` runs them alone.
Each sub-command sets ``func`` to a function of the parsed arguments that returns an exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.settings import AgentSettings
from cli.options import (
    add_agent_options,
    add_llm_options,
    add_model_options,
    add_threshold_options,
    llm_config,
    positive_float,
    positive_int,
)
from serving.clips import DEFAULT_MAX_FRAMES, DEFAULT_MAX_SECONDS

if TYPE_CHECKING:
    from agent.llm_config import LLMConfig

logger = logging.getLogger("sam3_agent.serve")

MIB = 1 << 20
DEFAULT_CHAT_DB = "sam3-agent-chat.sqlite"


def _llm_config(args: argparse.Namespace) -> LLMConfig | None:
    return llm_config(args)


def _agent_settings(args: argparse.Namespace) -> AgentSettings:
    return AgentSettings(score_threshold=args.threshold, max_steps=args.max_steps, verification=not args.no_verify)


def _engine_factory(args: argparse.Namespace):
    from sam3_core.engine import EngineOptions, Sam3Engine

    def load() -> Sam3Engine:
        return Sam3Engine.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                          options=EngineOptions(max_pixels=args.max_pixels))
    return load


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token: from --token-file when given, else --token / $SAM3_AGENT_TOKEN (None: no token)."""
    if getattr(args, "token_file", None):
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.readline().strip()
        except OSError as exc:
            raise SystemExit(f"cannot read --token-file: {exc}") from exc
        if not token:
            raise SystemExit(f"--token-file {args.token_file} is empty")
        return token
    return args.token or None


def _allowed_hosts(args: argparse.Namespace) -> tuple[str, ...]:
    """--allowed-host as given, else the loopback names when listening on a loopback address (the DNS
    rebinding guard, :mod:`serving.http.hosts`), else no check."""
    from serving.http.hosts import default_allowed_hosts

    if args.allowed_host:
        return tuple(args.allowed_host)
    return default_allowed_hosts(args.host)


def _serve(args: argparse.Namespace) -> int:
    from serving.config import ServeSettings
    from serving.http.app import create_app
    from serving.http.server import serve_forever

    settings = ServeSettings(
        model=args.model, device=args.device, dtype=args.dtype, token=_token(args),
        max_body_bytes=int(args.max_body_mb * MIB), max_pixels=args.max_pixels,
        request_timeout_s=args.request_timeout, agent_timeout_s=args.agent_timeout,
        allow_url_images=args.allow_url_images, url_max_bytes=int(args.url_max_mb * MIB),
        url_timeout_s=args.url_timeout, llm=_llm_config(args), agent=_agent_settings(args),
        state_db=args.state_db, chat_page=not args.no_chat_page, video=args.video,
        video_max_sessions=args.video_max_sessions, video_idle_timeout_s=args.video_idle_timeout,
        video_root=args.video_root, allowed_hosts=_allowed_hosts(args),
        url_allow_networks=tuple(args.url_allow_network or ()),
        retention_max_age_s=args.retention_days * 86400.0, retention_max_bytes=int(args.retention_max_mb * MIB),
        header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
        max_connections=args.max_connections,
        video_agent_max_frames=args.video_agent_max_frames,
        video_max_seconds=args.video_max_seconds, chat_max_clips=args.chat_max_clips,
    )
    # The app's default loaders: with --video they load the weights once for images and videos.
    app = create_app(settings)
    where = f"http://{args.host}:{args.port}"
    logger.info("serving on %s (API docs at %s/docs%s)", where, where,
                f", chat page at {where}/chat" if settings.chat_page else "")
    if settings.llm is None:
        logger.warning("no --llm: /v1/agent and the chat answer 503 until an LLM is configured")
    serve_forever(app, args.host, args.port, log_level="debug" if args.verbose_server else "info")
    return 0


def _video_factory(args: argparse.Namespace):
    from sam3_core.video import VideoEngine

    def load() -> VideoEngine:
        return VideoEngine.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    return load


def _mcp(args: argparse.Namespace) -> int:
    from serving.mcp.server import McpOptions, run_mcp_server

    stdio = args.transport == "stdio"
    options = McpOptions(llm=_llm_config(args), agent=_agent_settings(args), max_pixels=args.max_pixels,
                         allow_paths=stdio or args.image_root is not None, image_root=args.image_root,
                         agent_timeout_s=args.agent_timeout, video_agent_max_frames=args.video_agent_max_frames,
                         video_max_seconds=args.video_max_seconds)
    image_factory, video_factory = _shared_factories(args) if args.video else (_engine_factory(args), None)
    run_mcp_server(image_factory, options, transport="stdio" if stdio else "streamable-http",
                   host=args.host, port=args.port, video_factory=video_factory)
    return 0


def _shared_factories(args: argparse.Namespace):
    """Image and video loaders sharing one copy of the weights (the image engine is made of the video
    model's modules, as ``serve --video`` does), whichever is called first."""
    from serving.config import ServeSettings
    from serving.http.app import image_engine_from_video

    settings = ServeSettings(model=args.model, device=args.device, dtype=args.dtype, max_pixels=args.max_pixels)
    loaded: dict = {}

    def load_video():
        if "video" not in loaded:
            loaded["video"] = _video_factory(args)()
        return loaded["video"]

    def load_image():
        return image_engine_from_video(load_video(), settings)
    return load_image, load_video


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    add_threshold_options(parser, mask=False)
    add_agent_options(parser)
    add_llm_options(parser, required_url=False)
    group = parser.add_argument_group("serving")
    group.add_argument("--agent-timeout", type=float, default=300.0, help="seconds per agent query (default: 300)")
    group.add_argument("--video", action="store_true",
                       help="also serve video tracking (serve/chat share one copy of the weights with images; "
                            "mcp loads a second copy)")
    group.add_argument("--video-agent-max-frames", type=int, default=DEFAULT_MAX_FRAMES,
                       help="most frames the video agent looks at: the cap of a request's max_frames (HTTP 422 "
                            f"above); longer clips are sampled evenly (default: {DEFAULT_MAX_FRAMES})")
    group.add_argument("--video-max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                       help=f"longest clip the video agent accepts (HTTP 413 above; default: {DEFAULT_MAX_SECONDS:g})")


def _add_http_args(parser: argparse.ArgumentParser, *, state_db: str | None) -> None:
    group = parser.add_argument_group("HTTP server")
    group.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    group.add_argument("--port", type=int, default=8000)
    group.add_argument("--token", default=os.environ.get("SAM3_AGENT_TOKEN"),
                       help="require 'Authorization: Bearer <token>' on /v1/* (default: $SAM3_AGENT_TOKEN; "
                            "prefer the variable or --token-file: argv is visible in ps)")
    group.add_argument("--token-file", help="read the token from this file (first line) instead")
    group.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body (HTTP 413 above)")
    group.add_argument("--request-timeout", type=float, default=60.0, help="seconds per segment/refine request")
    group.add_argument("--allow-url-images", action="store_true",
                       help="let requests name images by http(s) URL (the server then fetches any URL it is given)")
    group.add_argument("--url-max-mb", type=float, default=20.0, help="largest image fetched from a URL")
    group.add_argument("--url-timeout", type=float, default=10.0, help="seconds per URL fetch")
    group.add_argument("--state-db", default=state_db,
                       help="SQLite file keeping agent threads and chat conversations across restarts"
                            + (f" (default: {state_db})" if state_db else " (default: in memory)"))
    group.add_argument("--no-chat-page", action="store_true", help="do not serve the chat page at /chat")
    group.add_argument("--video-max-sessions", type=int, default=2,
                       help="video sessions open at once (with --video; more get HTTP 429)")
    group.add_argument("--video-idle-timeout", type=float, default=600.0,
                       help="seconds before an unused video session is closed and its upload deleted")
    group.add_argument("--video-root", help="folder whose videos POST /v1/video/sessions may open by path "
                                            "(default: uploads only)")
    group.add_argument("--allowed-host", action="append", metavar="NAME",
                       help="a host name clients use to reach this server (repeatable; '*' any, '*.example.org' "
                            "sub-domains); other Host headers get HTTP 421. Default: localhost, 127.0.0.1 and ::1 "
                            "when --host is a loopback address (stops DNS rebinding), else no check")
    group.add_argument("--url-allow-network", action="append", metavar="CIDR",
                       help="a private network URL images may come from (repeatable; with --allow-url-images)")
    group.add_argument("--retention-days", type=positive_float, default=7.0,
                       help="delete conversations and agent threads unused for this many days (default: 7)")
    group.add_argument("--retention-max-mb", type=positive_float, default=1024.0,
                       help="keep stored conversations and threads under this size, oldest deleted first "
                            "(default: 1024)")
    group.add_argument("--header-timeout", type=positive_float, default=10.0,
                       help="seconds a connection has to send its request headers (default: 10)")
    group.add_argument("--body-timeout", type=positive_float, default=60.0,
                       help="seconds a request has to send its body after the headers (default: 60)")
    group.add_argument("--max-connections", type=positive_int, default=1000,
                       help="connections served at once; more get HTTP 503 (default: 1000)")
    group.add_argument("--chat-max-clips", type=int, default=8,
                       help="clip conversations of the chat kept in memory at once (default: 8)")
    group.add_argument("--verbose-server", action="store_true", help="uvicorn debug logging")


def add_serving_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``serve``, ``chat`` and ``mcp`` on a ``sam3-agent`` sub-parser collection."""
    serve = subparsers.add_parser("serve", help="HTTP API: /v1/segment, /v1/refine, /v1/agent, chat, metrics")
    _add_model_args(serve)
    _add_http_args(serve, state_db=None)
    serve.set_defaults(func=_serve)

    chat = subparsers.add_parser("chat", help="the chat page (multi-turn segmentation) at http://HOST:PORT/chat")
    _add_model_args(chat)
    _add_http_args(chat, state_db=DEFAULT_CHAT_DB)
    chat.set_defaults(func=_serve)

    mcp = subparsers.add_parser("mcp", help="MCP server with segment_phrase and reason_segment for other agents")
    _add_model_args(mcp)
    mcp.add_argument("--transport", choices=["stdio", "http"], default="stdio",
                     help="stdio (a local client starts this process) or http (streamable HTTP at /mcp)")
    mcp.add_argument("--host", default="127.0.0.1", help="address for --transport http")
    mcp.add_argument("--port", type=int, default=8765, help="port for --transport http")
    mcp.add_argument("--image-root", help="image_path must lie inside this folder (with --transport http, paths "
                                          "are refused unless this is set)")
    mcp.set_defaults(func=_mcp)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cli.serve serve|chat|mcp ...`` (the same as ``sam3-agent serve|chat|mcp ...``)."""
    parser = argparse.ArgumentParser(prog="python -m cli.serve", description=__doc__)
    add_serving_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    # Logs go to stderr: with the MCP stdio transport, stdout carries the protocol.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
