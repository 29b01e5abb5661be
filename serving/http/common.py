"""What the route modules share: the per-app :class:`Runtime`, body parsing (JSON or multipart) and timeouts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from agent.llm import LLMConfig
from sam3_core.engine import Sam3Engine
from sam3_core.images import LoadedImage
from sam3_core.video import VideoEngine
from serving.chat.store import ChatStore
from serving.config import ServeSettings
from serving.http.errors import ApiError, NotReady, Timeout
from serving.http.examples import multipart_content
from serving.http.forms import MAX_FIELDS, form_error, params_from_form, text_parts, validate_json
from serving.http.images import ImageIntake
from serving.http.metrics import Metrics
from serving.http.schemas import ImageSpec

T = TypeVar("T")
P = TypeVar("P", bound=BaseModel)


@dataclass
class Runtime:
    """Everything one app serves with; kept on ``app.state.runtime`` (one per app, never global)."""

    settings: ServeSettings
    intake: ImageIntake
    metrics: Metrics
    engine: Sam3Engine | None = None
    load_error: str = ""
    graph: CompiledStateGraph | None = None
    chat: ChatStore | None = None
    video: VideoEngine | None = None
    video_error: str = ""
    video_slots: asyncio.Semaphore | None = None

    def require_engine(self) -> Sam3Engine:
        """The engine, or 503 while it loads (or when loading failed)."""
        if self.engine is None:
            raise NotReady(f"the SAM 3 model failed to load: {self.load_error}" if self.load_error
                           else "the SAM 3 model is still loading; retry shortly (see GET /readyz)")
        return self.engine

    def require_agent(self) -> tuple[Sam3Engine, LLMConfig, CompiledStateGraph]:
        """Engine, LLM config and graph for an agent query; 503 when no LLM is configured."""
        engine = self.require_engine()
        if self.settings.llm is None:
            raise NotReady("no LLM is configured on this server (start it with --llm-url)")
        if self.graph is None:
            raise NotReady("the agent is still starting")
        return engine, self.settings.llm, self.graph

    def require_video(self) -> VideoEngine:
        """The video engine, or 503 when video is off, loading or failed to load."""
        if not self.settings.video:
            raise NotReady("video is not enabled on this server (start it with --video)")
        if self.video is None or self.video_slots is None:
            raise NotReady(f"the SAM 3 video model failed to load: {self.video_error}" if self.video_error
                           else "the SAM 3 video model is still loading; retry shortly (see GET /readyz)")
        return self.video

    def require_chat(self) -> ChatStore:
        if self.chat is None:
            raise NotReady("the chat store is still starting")
        return self.chat


def runtime(request: Request) -> Runtime:
    """The :class:`Runtime` of the app serving ``request``."""
    return request.app.state.runtime


ImageSource = ImageSpec | bytes


async def read_request(request: Request, json_model: type[P], params_model: type[BaseModel]) -> tuple[
        ImageSource, Any]:
    """Parse a JSON body (``json_model``) or a multipart one (file ``image``; parameters as a JSON part
    ``params`` and/or plain parts, see :mod:`serving.http.forms`).

    Returns the image (an :class:`ImageSpec` or the uploaded bytes) and the validated parameters (an
    instance of ``json_model`` for JSON, of ``params_model`` for multipart). Invalid bodies are 422
    (a malformed form says what it expects); other content types 415.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        body = await request.body()
        parsed = validate_json(json_model, body, ("body",))
        return parsed.image, parsed
    if kind == "multipart/form-data":
        async with request.form(max_files=1, max_fields=MAX_FIELDS) as form:
            upload = form.get("image")
            if not isinstance(upload, UploadFile):
                problem = "the part 'image' is text, not a file" if upload is not None else "no file part 'image'"
                raise form_error(problem, params_model, "image")
            data = await upload.read()
            parts = [(name, value) for name, value in text_parts(form) if name != "image"]
        return data, params_from_form(parts, params_model, "image")
    raise ApiError(415, f"send application/json or multipart/form-data, not {kind or 'no content type'!r}",
                   "unsupported_media_type")


async def load_image_source(rt: Runtime, source: ImageSource) -> LoadedImage:
    """Decode an uploaded or JSON image under the server's limits."""
    data = source if isinstance(source, bytes) else await rt.intake.bytes_of(source)
    return await rt.intake.decode(data)


async def with_timeout(work: Awaitable[T], seconds: float, what: str) -> T:
    """``await work``, or 504 after ``seconds``."""
    try:
        return await asyncio.wait_for(work, timeout=seconds)
    except TimeoutError as exc:
        raise Timeout(f"{what} took longer than this server's limit of {seconds:g}s") from exc


def body_doc(json_model: type[BaseModel], params_model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a body that is either ``json_model`` JSON or a multipart upload."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{json_model.__name__}"}},
        "multipart/form-data": multipart_content(params_model, "image", "the image file")}}}


def add_schemas(openapi: dict[str, Any], models: list[type[BaseModel]]) -> None:
    """Put ``models`` (and the models they use) into ``components.schemas`` of an OpenAPI document."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas.setdefault(model.__name__, schema)


def sse(event: dict[str, Any]) -> str:
    """One server-sent event: ``event:`` is the event's type, ``data:`` its JSON."""
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
