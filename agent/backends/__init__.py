"""Where completions come from: one interface (:class:`~agent.backends.base.Backend`), several backends.

* an OpenAI-compatible endpoint: :class:`agent.llm.LLMClient` itself (``base_url`` a URL);
* a pool of endpoints: :class:`agent.backends.pool.PoolBackend` (``base_url`` plus ``pool`` URLs);
* in-process transformers: :class:`agent.backends.hf_local.HFBackend` (``base_url="hf:<model>"``);
* in-process vLLM: :class:`agent.backends.vllm_local.VLLMBackend` (``base_url="vllm:<model>"``).

:func:`make_backend` picks one from an :class:`~agent.llm.LLMConfig`; the ``--llm`` syntax is in
:mod:`agent.backends.spec`. Heavy libraries (torch, transformers, vllm, grammar libraries) are imported
only by the backends that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.backends.spec import LLMSpec, parse_spec, parse_specs

if TYPE_CHECKING:
    from agent.backends.base import Backend
    from agent.llm import LLMConfig

__all__ = ["LLMSpec", "make_backend", "parse_spec", "parse_specs"]


def make_backend(config: LLMConfig, http_client: Any = None) -> Backend | None:
    """The backend for ``config``; None when the client should talk to ``config.base_url`` over HTTP itself.

    ``http_client`` (an ``httpx.AsyncClient``) is handed to the pooled endpoints' clients.
    """
    specs = parse_specs([config.base_url, *config.pool])
    if len(specs) > 1:
        from agent.backends.pool import PoolBackend

        return PoolBackend(specs, config, http_client)
    spec = specs[0]
    if spec.kind == "hf":
        from agent.backends.hf_local import HFBackend

        return HFBackend(spec.target, config)
    if spec.kind == "vllm":
        from agent.backends.vllm_local import VLLMBackend

        return VLLMBackend(spec.target, config)
    return None
