"""Helpers every command uses: JSON output, the early model check, reading an image argument."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from sam3_core.errors import InputError

logger = logging.getLogger("sam3_agent.cli")

#: Largest image fetched from a URL given on the command line.
URL_MAX_BYTES = 50 << 20
URL_TIMEOUT_S = 20.0


def write_json(document: Any, out: str | Path) -> None:
    """Write ``document`` as JSON to the file ``out`` (its folder is created) or to stdout for '-'."""
    text = json.dumps(document, indent=1)
    if str(out) == "-":
        sys.stdout.write(text + "\n")
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)


def check_model(model: str) -> None:
    """Fail in seconds, before torch is imported, when ``model`` is neither a folder nor a reachable hub
    checkpoint (see :func:`sam3_core.hub.hub_access`; the loaders call it again and act on its result)."""
    from sam3_core.hub import hub_access

    hub_access(model)
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        # transformers' "Loading weights" bar is noise at the default verbosity (download bars are the hub's
        # own and stay on).
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


def read_image_source(source: str) -> str | bytes:
    """A path as is; an http(s) URL fetched to bytes (at most :data:`URL_MAX_BYTES`)."""
    if not source.startswith(("http://", "https://")):
        return source
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(source, timeout=URL_TIMEOUT_S) as response:  # http(s) only: checked above
            data = response.read(URL_MAX_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise InputError(f"cannot fetch {source}: {getattr(exc, 'reason', exc)}") from None
    if len(data) > URL_MAX_BYTES:
        raise InputError(f"{source} is larger than {URL_MAX_BYTES >> 20} MiB")
    return data


#: Seconds the reachability probe of the LLM endpoint may take.
LLM_PROBE_TIMEOUT_S = 5.0


def check_llm(base_url: str, api_key: str = "", timeout_s: float = LLM_PROBE_TIMEOUT_S) -> None:
    """Fail before any model loads when nothing answers at the LLM endpoint.

    One ``GET {base_url}/models`` with no retry. Any HTTP answer, even an error status, counts as
    reachable (the agent's own calls then report what is wrong); a refused connection, an unknown host
    or a timeout raises :class:`InputError` naming the URL tried.
    """
    import urllib.error
    import urllib.request

    url = base_url.rstrip("/") + "/models"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):  # http(s) only: a URL given by the user
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"no LLM answers at {url} ({reason}); start the OpenAI-compatible server (e.g. "
                         "`vllm serve MODEL --port 8000`) or point --llm-url at it") from None
