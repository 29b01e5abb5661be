"""The HTTP API: :func:`create_app` builds a FastAPI app around one shared :class:`~sam3_core.Sam3Engine`.

Endpoints (all JSON; errors as ``{"error": {"status", "code", "message"}}``, see :mod:`serving.http.errors`):

==========================================  ============================================================
``GET  /healthz``                           the process is up (always 200)
``GET  /readyz``                            200 once the model is loaded and the state DB usable, else 503
``GET  /metrics``                           Prometheus metrics (:mod:`serving.http.metrics`)
``POST /v1/segment``                        raw SAM 3: every instance of each phrase
``POST /v1/refine``                         one object's mask from clicks and/or a box
``POST /v1/agent``                          the agent's answer to a query (JSON or server-sent events)
``DELETE /v1/agent/threads/{id}``           forget an agent thread (its checkpoints)
``POST /v1/chat`` and ``/v1/chat/...``      multi-turn chat over one image (:mod:`serving.chat.routes`);
                                            ``DELETE /v1/chat/{id}`` deletes one
``POST /v1/video/sessions`` and ``/...``     video sessions: open, prompt, propagate, close (with ``--video``;
                                            see :mod:`serving.http.video`)
``POST /v1/video/track``                    track objects through a video in one request (with ``--video``)
``/v1/chat/clips/...``                      chat about a video clip, with follow-ups (:mod:`serving.chat.clip_routes`)
``GET  /chat``                              the chat page
``GET  /openapi.json``, ``/docs``           the OpenAPI schema and its browsable form
==========================================  ============================================================

With a token set, every ``/v1/*`` request needs ``Authorization: Bearer <token>`` (checked before
the body is read); health, readiness, metrics, the page and the schema stay open. Without one,
state-changing ``/v1/*`` requests that a browser sent from another site are refused (403, see
:mod:`serving.http.guards`). ``/readyz`` also checks the state database (a damaged, unwritable or
foreign file makes it 503 with the reason; segmentation keeps working, agent and chat answer 503).

The model loads in a background thread at start-up, so ``/healthz`` answers at once and ``/readyz``
turns 200 when the engine is ready. All state lives on ``app.state.runtime`` (:class:`Runtime`), the
video sessions on ``app.state.video_sessions``. With video on and the default loaders, the video model
is loaded first and the image engine is built from its modules (one copy of the weights, see
:func:`sam3_core.loading.image_models_from_video`); should the video model fail to load, the image
engine is loaded on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from agent.graph import build_graph
from agent.llm import LLMClient
from sam3_core.engine import EngineOptions, Sam3Engine
from sam3_core.loading import image_models_from_video
from sam3_core.video import VideoEngine, VideoOptions
from serving.chat import clip_routes as clip_chat
from serving.chat import routes as chat
from serving.chat.clips import ClipChats, StoredClips, clip_root_for
from serving.chat.retention import Retention
from serving.chat.store import ChatStore
from serving.config import ServeSettings
from serving.http import agent as http_agent
from serving.http import segment as http_segment
from serving.http import video as http_video
from serving.http import video_agent as http_video_agent
from serving.http.common import Runtime, add_schemas, runtime
from serving.http.errors import install_error_handlers, redact
from serving.http.examples import add_examples
from serving.http.guards import BodyDeadline, SameOriginGuard
from serving.http.hosts import HostAllowList
from serving.http.images import ImageIntake
from serving.http.metrics import Metrics, MetricsMiddleware
from serving.http.middleware import BearerAuthMiddleware, BodyLimitMiddleware, CatchAllMiddleware
from serving.http.schemas import (
    AgentEvent,
    AgentParams,
    AgentRequest,
    ChatCreate,
    Health,
    NoParams,
    Readiness,
    RefineParams,
    RefineRequest,
    SegmentParams,
    SegmentRequest,
    VideoEvent,
    VideoParams,
    VideoSessionCreate,
)
from serving.http.video_agent_schemas import VideoAgentEvent, document_clip_caps
from serving.http.video_sessions import VideoSessionStore

logger = logging.getLogger(__name__)

EngineFactory = Callable[[], Sam3Engine]
_BODY_MODELS = [SegmentRequest, SegmentParams, RefineRequest, RefineParams, AgentRequest, AgentParams, AgentEvent,
                ChatCreate, NoParams, VideoParams, VideoSessionCreate, VideoEvent, VideoAgentEvent]


def default_engine_factory(settings: ServeSettings) -> EngineFactory:
    """Loads ``settings.model`` with the server's pixel limit (tracker included, for ``/v1/refine``)."""
    def load() -> Sam3Engine:
        return Sam3Engine.from_pretrained(settings.model, device=settings.device, dtype=settings.dtype,
                                          options=EngineOptions(max_pixels=settings.max_pixels))
    return load


def default_video_factory(settings: ServeSettings) -> Callable[[], VideoEngine]:
    """Loads ``settings.model`` as a video engine (the checkpoint needs the video processor files)."""
    def load() -> VideoEngine:
        options = VideoOptions(max_sessions=settings.video_max_sessions,
                               idle_timeout_s=settings.video_idle_timeout_s)
        return VideoEngine.from_pretrained(settings.model, device=settings.device, dtype=settings.dtype,
                                           options=options)
    return load


def image_engine_from_video(video: VideoEngine, settings: ServeSettings) -> Sam3Engine:
    """An image engine made of ``video``'s detector and tracker modules: no second copy of the weights."""
    models = image_models_from_video(video.model, settings.model)
    return Sam3Engine(models.detector, models.processor, models.tracker, models.tracker_processor,
                      device=video.device, dtype=video.dtype, options=EngineOptions(max_pixels=settings.max_pixels))


def shared_factories(settings: ServeSettings) -> dict[str, Callable[[], Any]]:
    """Loaders of the video engine, then of the image engine sharing its weights (loaded alone as a fallback)."""
    loaded: dict[str, VideoEngine] = {}

    def load_video() -> VideoEngine:
        loaded["video"] = default_video_factory(settings)()
        return loaded["video"]

    def load_image() -> Sam3Engine:
        if "video" not in loaded:
            logger.warning("the video model did not load; loading the image model on its own")
            return default_engine_factory(settings)()
        return image_engine_from_video(loaded["video"], settings)
    return {"video": load_video, "engine": load_image}


async def _open_checkpointer(stack: contextlib.AsyncExitStack, path: str | None) -> BaseCheckpointSaver:
    if path is None:
        return InMemorySaver()
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    saver = await stack.enter_async_context(AsyncSqliteSaver.from_conn_string(path))
    await saver.setup()
    return saver


async def _load(rt: Runtime, attribute: str, factory: Callable[[], Any], what: str) -> None:
    """Set ``rt.<attribute>`` from ``factory`` (run in a thread); a failure is kept in ``<attribute>_error``."""
    try:
        setattr(rt, attribute, await asyncio.to_thread(factory))
        logger.info("%s ready (%s)", what, rt.settings.model)
    except Exception as exc:  # reported by /readyz and by 503s; the server keeps running
        error = f"{type(exc).__name__}: {exc}"
        setattr(rt, "load_error" if attribute == "engine" else "video_error", error)
        logger.error("%s failed to load: %s", what, error)


Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


async def _load_all(rt: Runtime, factories: dict[str, Callable[[], Any]], names: dict[str, str]) -> None:
    for name, factory in factories.items():
        await _load(rt, name, factory, names[name])


async def _open_state(rt: Runtime, stack: contextlib.AsyncExitStack) -> None:
    """The checkpointer, the chat store and their retention; a state file that cannot be used is reported
    by ``/readyz`` and by 503s of the agent and chat routes (segmentation keeps working)."""
    path = rt.settings.state_db
    try:
        saver = await _open_checkpointer(stack, path)
        rt.chat = ChatStore(path or ":memory:")
    except (sqlite3.Error, OSError) as exc:
        rt.state_error = f"{type(exc).__name__}: {redact(str(exc))}"
        logger.error("the state database %s cannot be used: %s", path, exc)
        return
    stack.callback(rt.chat.close)
    rt.graph = build_graph(saver)
    clip_root = clip_root_for(path) if path and path != ":memory:" else None  # clips of stored conversations
    rt.retention = Retention(rt.chat, saver, rt.settings.retention_max_age_s, rt.settings.retention_max_bytes,
                             rt.settings.retention_sweep_s, clip_root=clip_root)


def _clip_chats(rt: Runtime) -> ClipChats:
    """Clip conversations stored in the state file (next to it, their clips) when there is one that works; else
    in memory only."""
    settings, stored = rt.settings, None
    if rt.retention is not None and rt.retention.clip_root is not None and rt.graph is not None:
        stored = StoredClips(rt.retention.store, rt.retention, rt.graph, rt.retention.clip_root)
    elif settings.state_db is not None:
        logger.warning("clip conversations are kept in memory only: the state database cannot be used")
    return ClipChats(settings.chat_max_clips, settings.video_idle_timeout_s, stored)


def _lifespan(factories: dict[str, Callable[[], Any]]) -> Lifespan:
    """Opens the checkpointer and chat store, loads the engines in the background, closes what it loaded."""
    names = {"engine": "the SAM 3 engine", "video": "the SAM 3 video engine"}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt: Runtime = app.state.runtime
        async with contextlib.AsyncExitStack() as stack:
            await _open_state(rt, stack)
            app.state.clip_chats = _clip_chats(rt)
            if rt.settings.llm is not None:  # shared by all queries: pooled connections, or a model loaded once
                rt.llm = await stack.enter_async_context(LLMClient(rt.settings.llm))
            rt.video_slots = asyncio.Semaphore(rt.settings.video_max_sessions)
            store = app.state.video_sessions = _video_store(rt)
            sweeper = asyncio.create_task(store.sweep_forever()) if rt.settings.video else None
            retention = asyncio.create_task(rt.retention.run_forever()) if rt.retention else None
            # One after the other: two threads importing and loading models at once race inside transformers.
            loading = asyncio.create_task(_load_all(rt, factories, names))
            try:
                yield
            finally:
                await _stop(sweeper)
                await _stop(retention)
                await loading  # a load in progress cannot be interrupted; let it finish, then close
                await app.state.clip_chats.close()
                await store.shutdown()  # closes the video sessions and deletes their uploads
                for name in factories:
                    if getattr(rt, name) is not None:
                        getattr(rt, name).close()
    return lifespan


async def _stop(task: asyncio.Task | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _video_store(rt: Runtime) -> VideoSessionStore:
    assert rt.video_slots is not None
    return VideoSessionStore(rt.require_video, rt.video_slots, idle_timeout_s=rt.settings.video_idle_timeout_s,
                             max_pixels=rt.settings.max_pixels)


def _install_openapi(app: FastAPI, settings: ServeSettings) -> None:
    """Publish the JSON/multipart body models and, with a token, the bearer security scheme."""
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        add_schemas(schema, _BODY_MODELS)
        add_examples(schema)
        document_clip_caps(schema, settings.video_agent_max_frames)
        if settings.token:
            schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in schema["paths"].items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema
    app.openapi = build  # type: ignore[method-assign]


def _install_service_routes(app: FastAPI) -> None:
    @app.get("/healthz", response_model=Health, tags=["service"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, tags=["service"],
             summary="The model is loaded and the state database usable",
             responses={503: {"model": Readiness, "description": "still loading, loading failed, or the state "
                                                                 "database cannot be used"}})
    async def readyz(request: Request) -> JSONResponse:
        rt = runtime(request)
        parts = [("", rt.engine, rt.load_error)]
        if rt.settings.video:
            parts.append(("video model ", rt.video, rt.video_error))
        waiting = [f"{name}loading failed: {redact(error)}" if error else f"{name}loading"
                   for name, loaded, error in parts if loaded is None]
        state = rt.state_error or (await rt.chat.aprobe() if rt.chat is not None else "")
        if state:
            waiting.append(f"state database unusable: {redact(state)}")
        ready, detail = not waiting, "; ".join(waiting)
        return JSONResponse({"ready": ready, "detail": detail}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        body, content_type = runtime(request).metrics.render()
        return Response(body, media_type=content_type)


def _factories(settings: ServeSettings, engine: Sam3Engine | None, engine_factory: EngineFactory | None,
               video_engine: VideoEngine | None, video_factory: Callable[[], VideoEngine] | None) -> dict[str, Any]:
    """The engines the app loads itself at start-up (those not handed over ready)."""
    if (engine is not None and engine_factory is not None) or (video_engine is not None and video_factory):
        raise ValueError("pass an engine or its factory, not both")
    if settings.video and all(given is None for given in (engine, engine_factory, video_engine, video_factory)):
        return shared_factories(settings)
    factories: dict[str, Callable[[], Any]] = {}
    if engine is None:
        factories["engine"] = engine_factory or default_engine_factory(settings)
    if settings.video and video_engine is None:
        factories["video"] = video_factory or default_video_factory(settings)
    return factories


def create_app(settings: ServeSettings | None = None, *, engine: Sam3Engine | None = None,
               engine_factory: EngineFactory | None = None, video_engine: VideoEngine | None = None,
               video_factory: Callable[[], VideoEngine] | None = None) -> FastAPI:
    """The API app.

    Args:
        settings: limits, token, LLM and state file; defaults to :class:`ServeSettings`.
        engine: an engine to serve with (the caller keeps ownership and closes it); ready at once.
        engine_factory: builds the engine at start-up, in a thread (default: ``settings.model`` via
            :meth:`Sam3Engine.from_pretrained`); the app closes it at shutdown. Not with ``engine``.
        video_engine, video_factory: the same for the video engine (only with ``settings.video``).

    With ``settings.video`` and none of the four given, the app loads the video model and builds the
    image engine from its modules (:func:`shared_factories`): one copy of the weights serves both.
    """
    settings = settings or ServeSettings()
    factories = _factories(settings, engine, engine_factory, video_engine, video_factory)
    intake = ImageIntake(max_pixels=settings.max_pixels, max_bytes=settings.max_body_bytes,
                         allow_urls=settings.allow_url_images, url_max_bytes=settings.url_max_bytes,
                         url_timeout_s=settings.url_timeout_s, url_allow_networks=settings.url_allow_networks)
    app = FastAPI(title="SAM 3 agent", version="0.1.0", lifespan=_lifespan(factories),
                  description="Raw SAM 3 segmentation, click refinement, video tracking and a "
                              "reasoning-segmentation agent.")
    rt = Runtime(settings=settings, intake=intake, metrics=Metrics(lambda: app.state.runtime.engine), engine=engine,
                 video=video_engine)
    app.state.runtime = rt
    install_error_handlers(app)
    _install_service_routes(app)
    for module in (http_segment, http_agent, clip_chat, chat, http_video, http_video_agent):
        app.include_router(module.router)
    if settings.chat_page:
        chat.install_chat_page(app)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(BodyDeadline, seconds=settings.body_timeout_s)
    if settings.token:
        app.add_middleware(BearerAuthMiddleware, token=settings.token)
    else:
        app.add_middleware(SameOriginGuard)
    if settings.allowed_hosts:
        app.add_middleware(HostAllowList, allowed=settings.allowed_hosts)
    app.add_middleware(MetricsMiddleware, metrics=rt.metrics)
    _install_openapi(app, settings)
    return app
