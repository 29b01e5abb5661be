"""Before loading from the Hugging Face hub: one quick probe that fails in seconds with what to do.

``from_pretrained`` retries every unreachable file with backoff, which offline means minutes and a log
line per retry before a bare ``OSError``. :func:`hub_access` makes one request with no retry and turns
the outcome into a :class:`~sam3_core.errors.CheckpointError` naming the remedies (a token, a local
folder, offline mode). It imports no torch, so a command line can call it before loading any model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .defaults import DEFAULT_MODEL_ID, HUB_PROBE_TIMEOUT_S, resolve_model_id
from .errors import CheckpointError

logger = logging.getLogger(__name__)


def _looks_like_path(model_id: str) -> bool:
    """A folder name rather than a hub id (``owner/name``): relative or absolute paths, or no owner."""
    return model_id.startswith((".", "/", "~")) or model_id.count("/") != 1 or "\\" in model_id


_LOCAL_INSTEAD = ("or use a local checkpoint folder instead (`--model PATH` on the command line; "
                  "`sam3-agent make-tiny-checkpoint DIR` writes a small random one for trying the tools)")


def hub_access(model_id: str, token: str | None = None, *, timeout_s: float = HUB_PROBE_TIMEOUT_S,
               instead: str = _LOCAL_INSTEAD) -> dict:
    """Check, in seconds, that ``model_id`` can be loaded before ``from_pretrained`` is called.

    ``from_pretrained`` retries each unreachable file with backoff (minutes offline, with a log line per
    retry); this makes one request (``HEAD`` of the repo's ``config.json``, no retries) instead and fails
    with what to do. Returns extra ``from_pretrained`` keyword arguments: ``{"local_files_only": True}``
    when the hub cannot be reached but the checkpoint is in the local cache, else ``{}``.

    ``instead`` is the message's closing advice (what to use instead of the hub), by default a local SAM 3
    checkpoint; other callers (an in-process LLM) pass their own.

    Raises:
        CheckpointError: a local-looking path that does not exist; a hub id that is neither reachable nor
            cached (offline mode, no network, DNS failure), gated, private or unknown.
    """
    import huggingface_hub as hub
    from huggingface_hub.errors import HFValidationError

    model_id = resolve_model_id(model_id)
    if Path(model_id).expanduser().exists():
        return {}
    if _looks_like_path(model_id):
        raise CheckpointError(f"no checkpoint folder at {model_id}; pass an existing folder (e.g. one written "
                              "by `sam3-agent make-tiny-checkpoint DIR`) or a hub id such as " + DEFAULT_MODEL_ID)
    try:
        cached = isinstance(hub.try_to_load_from_cache(model_id, "config.json"), str)
    except HFValidationError as exc:
        raise CheckpointError(f"{model_id!r} is neither a folder nor a valid hub id: {exc}") from exc
    if hub.is_offline_mode():
        if cached:
            return {}
        raise CheckpointError(
            f"HF_HUB_OFFLINE is set and {model_id} is not in the local Hugging Face cache; unset HF_HUB_OFFLINE "
            f"and log in (`hf auth login` or HF_TOKEN) to download it once, {instead}")
    return _probe(model_id, token, timeout_s, cached, instead)


def _probe(model_id: str, token: str | None, timeout_s: float, cached: bool, instead: str) -> dict:
    """One ``HEAD`` of ``model_id``'s ``config.json`` on the hub (no retries), its outcome as :func:`hub_access`
    returns or raises it: ``{}`` when reachable, ``{"local_files_only": True}`` when unreachable but ``cached``."""
    import huggingface_hub as hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    endpoint = hub.constants.ENDPOINT
    try:
        # The hub's file URL, built from ENDPOINT at call time (HF_ENDPOINT, a mirror, or a test's server).
        url = f"{endpoint.rstrip('/')}/{model_id}/resolve/main/config.json"
        hub.get_hf_file_metadata(url, token=token, timeout=timeout_s)
    except GatedRepoError as exc:
        raise CheckpointError(_gated_message(model_id, token, endpoint, instead)) from exc
    except RepositoryNotFoundError as exc:
        raise CheckpointError(
            f"{model_id} is not on the hub at {endpoint}, or it is private or gated and no valid token was sent "
            f"({_token_state(token)}); check the id, log in with `hf auth login` or set HF_TOKEN, "
            f"{instead}") from exc
    except Exception as exc:  # connection refused, DNS failure, timeout, 5xx: "unreachable"
        if cached:
            logger.warning("the hub at %s cannot be reached (%s); using the cached copy of %s", endpoint,
                           type(exc).__name__, model_id)
            return {"local_files_only": True}
        raise CheckpointError(
            f"cannot reach the Hugging Face hub at {endpoint} to download {model_id} ({type(exc).__name__}: "
            f"{exc}) and it is not in the local cache. Connect and log in (`hf auth login` or set HF_TOKEN; "
            f"{model_id} may be gated: request access on its page first), {instead}; with the model "
            "already downloaded elsewhere, point HF_HOME at that cache and set HF_HUB_OFFLINE=1") from exc
    return {}


def _token_state(token: str | None) -> str:
    import huggingface_hub as hub

    return "a token was given" if token else ("HF_TOKEN/login token found" if hub.get_token() else
                                             "no HF_TOKEN and no `hf auth login` token found")


def _gated_message(model_id: str, token: str | None, endpoint: str, instead: str = _LOCAL_INSTEAD) -> str:
    return (f"{model_id} is a gated repository ({_token_state(token)}): request access at "
            f"{endpoint}/{model_id}, then log in with `hf auth login` or set HF_TOKEN to a token of the account "
            f"that was granted access, {instead}")
