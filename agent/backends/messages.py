"""OpenAI-style chat messages turned into the form transformers' chat templates and processors take.

OpenAI content parts ``{"type": "image_url", "image_url": {"url": "data:..."}}`` become
``{"type": "image", "image": <PIL image>}``; text parts stay; assistant ``tool_calls`` get their
arguments as objects (chat templates serialise them themselves). Only ``data:`` URLs are accepted: an
in-process model never fetches anything.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Sequence
from typing import Any

from PIL import Image

from sam3_core.errors import UsageError


def decode_data_url(url: str) -> Image.Image:
    """The RGB image in a base64 ``data:image/...`` URL (UsageError for anything else)."""
    head, _, payload = url.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64")):
        raise UsageError(f"in-process models take images as base64 data: URLs, got {url[:40]!r}")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        image.load()
    except (binascii.Error, OSError, ValueError) as exc:
        raise UsageError(f"an image in the conversation could not be decoded: {exc}") from exc
    return image.convert("RGB")


def _part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "image_url":
        url = part.get("image_url", {})
        return {"type": "image", "image": decode_data_url(url.get("url", "") if isinstance(url, dict) else str(url))}
    raise UsageError(f"unsupported content part type {kind!r} (expected 'text' or 'image_url')")


def _call(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function", {}))
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            arguments = {}
    return {"type": "function", "function": {"name": function.get("name", ""), "arguments": arguments}}


def to_hf_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of ``messages`` in the transformers chat-template form (see the module docstring)."""
    out = []
    for message in messages:
        content = message.get("content")
        converted: dict[str, Any] = {"role": message["role"]}
        if isinstance(content, list):
            converted["content"] = [_part(p) for p in content]
        else:
            converted["content"] = content or ""
        if message.get("tool_calls"):
            converted["tool_calls"] = [_call(c) for c in message["tool_calls"]]
        out.append(converted)
    return out


def images_of(messages: Sequence[dict[str, Any]]) -> list[Image.Image]:
    """The images of converted ``messages``, in order."""
    return [p["image"] for m in messages if isinstance(m.get("content"), list)
            for p in m["content"] if p.get("type") == "image"]
