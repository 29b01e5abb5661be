"""Settings of the HTTP API and the chat page (one frozen dataclass, built by the CLI or by tests)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from agent.llm import LLMConfig
from agent.settings import AgentSettings
from sam3_core.errors import UsageError
from sam3_core.images import DEFAULT_MAX_PIXELS
from serving.clips import DEFAULT_MAX_FRAMES, DEFAULT_MAX_SECONDS, ClipLimits

MIB = 1 << 20


@dataclass(frozen=True)
class ServeSettings:
    """What the server loads and the limits it enforces.

    Attributes:
        model: SAM 3 hub id or local checkpoint folder (ignored when the app is given an engine).
        device, dtype: passed to :meth:`Sam3Engine.from_pretrained` (None: automatic).
        token: bearer token required on ``/v1/*`` (None: no authentication).
        max_body_bytes: larger request bodies get HTTP 413.
        max_pixels: larger images get HTTP 413 (checked from the image header, before decoding).
        request_timeout_s: longest ``/v1/segment`` and ``/v1/refine`` may take (HTTP 504 after).
        agent_timeout_s: longest one agent query may take (HTTP 504 after).
        allow_url_images: let requests name an image by ``http(s)://`` URL (off by default: the server
            would fetch any address a caller names).
        url_max_bytes, url_timeout_s: size cap and timeout of one URL fetch.
        llm: where the multimodal LLM is; None disables ``/v1/agent`` and chat (HTTP 503).
        agent: the agent's limits; ``score_threshold`` also is the default of ``/v1/segment``.
        state_db: SQLite file keeping agent threads and chat conversations across restarts (None: memory).
        chat_page: serve the chat page at ``/chat``.
        chat_history_turns: earlier turns of a conversation quoted to the agent with a follow-up.
        chat_max_clips: clip conversations kept in memory at once (the least recently used idle one makes room;
            one unused for ``video_idle_timeout_s`` leaves memory too). With a state file that only unloads it (it
            is read back on its next use); without one it ends the conversation.
        video: also serve videos (``/v1/video/*``). With the default loaders the image engine is then
            built from the video model's modules, so the weights are loaded once.
        video_max_sessions: video sessions open at once (``POST /v1/video/sessions`` beyond it gets
            HTTP 429; ``/v1/video/track`` waits for a free one). video_timeout_s: per request.
        video_idle_timeout_s: a video session unused for this long is closed and its upload deleted.
        video_agent_max_frames: the most frames the video agent (``/v1/video/agent``, chat clips) looks at:
            the cap of the request field ``max_frames`` and its default; longer clips are sampled evenly
            (see :mod:`serving.clips`). video_max_seconds: longer clips are refused (HTTP 413).
        video_root: folder whose videos ``POST /v1/video/sessions`` may open by server-side path
            (None: only uploads).
        url_allow_networks: CIDR networks that URL images may come from although they are private (an
            intranet image server); every other private, loopback, link-local or reserved address is refused.
        retention_max_age_s: conversations and agent threads unused for this long are deleted.
        retention_max_bytes: when stored conversations and threads exceed this, the least recently used go.
        retention_sweep_s: how often the retention limits are applied (also after every new conversation).
        header_timeout_s: a connection must send its request headers within this (slowloris guard);
            body_timeout_s: and its body within this after the headers (HTTP 408 after).
        max_connections: connections served at once (uvicorn answers 503 above).
        allowed_hosts: host names the server answers to (``Host`` header; ``*`` any, ``*.example.org``
            sub-domains); others get HTTP 421, which stops DNS rebinding. Empty: no check (``sam3-agent serve``
            fills in the loopback names when it listens on a loopback address).
    """

    model: str = "facebook/sam3"
    device: str | None = None
    dtype: str | None = None
    token: str | None = None
    max_body_bytes: int = 32 * MIB
    max_pixels: int = DEFAULT_MAX_PIXELS
    request_timeout_s: float = 60.0
    agent_timeout_s: float = 300.0
    allow_url_images: bool = False
    url_max_bytes: int = 20 * MIB
    url_timeout_s: float = 10.0
    llm: LLMConfig | None = None
    agent: AgentSettings = field(default_factory=AgentSettings)
    state_db: str | None = None
    chat_page: bool = True
    chat_history_turns: int = 3
    chat_max_clips: int = 8
    video: bool = False
    video_max_sessions: int = 2
    video_timeout_s: float = 600.0
    video_idle_timeout_s: float = 600.0
    video_agent_max_frames: int = DEFAULT_MAX_FRAMES
    video_max_seconds: float = DEFAULT_MAX_SECONDS
    video_root: str | None = None
    url_allow_networks: tuple[str, ...] = ()
    retention_max_age_s: float = 7 * 24 * 3600.0
    retention_max_bytes: int = 1 << 30
    retention_sweep_s: float = 300.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 1000
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if min(self.max_body_bytes, self.max_pixels, self.url_max_bytes) < 1:
            raise UsageError("max_body_bytes, max_pixels and url_max_bytes must be >= 1")
        if min(self.request_timeout_s, self.agent_timeout_s, self.url_timeout_s, self.video_timeout_s,
               self.video_idle_timeout_s, self.retention_max_age_s, self.retention_sweep_s,
               self.header_timeout_s, self.body_timeout_s) <= 0:
            raise UsageError("timeouts must be > 0 seconds")
        if self.token is not None and not self.token.strip():
            raise UsageError("token must not be empty (use None for no authentication)")
        if self.video_max_sessions < 1:
            raise UsageError("video_max_sessions must be >= 1")
        if self.video_agent_max_frames < 1 or not self.video_max_seconds > 0:
            raise UsageError("video_agent_max_frames must be >= 1 and video_max_seconds > 0")
        if min(self.retention_max_bytes, self.max_connections) < 1:
            raise UsageError("retention_max_bytes and max_connections must be >= 1")
        for network in self.url_allow_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise UsageError(f"url_allow_networks: {network!r} is not a CIDR network such as 10.0.0.0/8") from None
        if any(not host.strip() or any(c.isspace() or c in "/@" for c in host) for host in self.allowed_hosts):
            raise UsageError(f"allowed_hosts must be host names (no spaces, '/' or '@'): {self.allowed_hosts}")
        if self.chat_max_clips < 1:
            raise UsageError("chat_max_clips must be >= 1")
        if self.chat_history_turns < 0:
            raise UsageError("chat_history_turns must be >= 0")

    def clip_limits(self) -> ClipLimits:
        """The video agent's clip bounds (:mod:`serving.clips`)."""
        return ClipLimits(self.video_agent_max_frames, self.video_max_seconds, self.max_pixels)
