"""Example request bodies of the HTTP API, published in its OpenAPI schema and used in its error hints.

:data:`EXAMPLES` maps a request model's name (a schema in ``components.schemas``) to one example body;
:func:`add_examples` puts them into an OpenAPI document, and :func:`multipart_content` documents the
multipart form of an upload endpoint (file part, ``params`` JSON part, or the same fields as plain parts).
The test suite validates every example against its model, so they cannot drift from the schema.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel

#: Stands for the base64 of an image file in the examples (the real thing is too long to show).
IMAGE = {"base64": "<base64 of the image file, or a data:image/jpeg;base64,... URL>"}

SEGMENT = {"phrases": ["dog", "red car"], "score_threshold": 0.4, "formats": ["rle"]}
REFINE = {"points": [[320, 240], [400, 260]], "point_labels": [1, 0], "formats": ["rle", "png"]}
AGENT = {"query": "the dog closest to the camera", "include_overlay": True}
VIDEO = {"phrases": ["person"], "max_frames": 30, "masks": False}

EXAMPLES: dict[str, dict[str, Any]] = {
    "ImageSpec": IMAGE,
    "SegmentParams": SEGMENT,
    "SegmentRequest": {"image": IMAGE, **SEGMENT},
    "RefineParams": REFINE,
    "RefineRequest": {"image": IMAGE, **REFINE},
    "AgentParams": AGENT,
    "AgentRequest": {"image": IMAGE, **AGENT},
    "ChatCreate": {"image": IMAGE},
    "NoParams": {},
    "ChatMessage": {"message": "only the one on the left", "stream": False},
    "VideoParams": VIDEO,
    "VideoSessionCreate": {"path": "clips/street.mp4"},
    "VideoPrompt": {"frame_index": 0, "points": [[210, 350]], "point_labels": [1], "phrases": ["person"]},
    "VideoPropagate": {"start_frame": 0, "direction": "forward", "max_frames": 60, "stream": True},
    "MaskLogits": {"shape": [256, 256], "dtype": "float16", "base64": "<low_res_logits.base64 of an answer>"},
}

#: Path parameters, with their examples.
SessionId = Annotated[str, Path(description="a video session's id (from POST /v1/video/sessions)",
                                examples=["6e9c4fa0d48d46a1"])]
ObjectId = Annotated[int, Path(description="an object id of the session", examples=[0])]
ConversationId = Annotated[str, Path(description="a conversation's id (from POST /v1/chat)",
                                     examples=["chat-fe9d5606b4224e6d85ad27f1f8015ff7"])]
TurnIndex = Annotated[int, Path(description="the turn's index, from 0", examples=[0])]

#: The multipart example of each params model: (file part, fields) for the plain-field form.
FORM_EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "SegmentParams": ("image", SEGMENT),
    "RefineParams": ("image", REFINE),
    "AgentParams": ("image", AGENT),
    "NoParams": ("image", {}),
    "VideoParams": ("video", VIDEO),
}


def add_examples(openapi: dict[str, Any]) -> None:
    """Set ``examples`` on every request schema of ``openapi`` that :data:`EXAMPLES` has one for."""
    schemas = openapi.get("components", {}).get("schemas", {})
    for name, example in EXAMPLES.items():
        if name in schemas:
            schemas[name]["examples"] = [example]


def _form_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def curl_fields(fields: dict[str, Any]) -> list[str]:
    """``fields`` as curl ``-F`` arguments: a list of scalars becomes one repeated plain part per item."""
    out = []
    for name, value in fields.items():
        items = value if isinstance(value, list) and all(not isinstance(v, list | dict) for v in value) else [value]
        out += [f"-F '{name}={_form_value(item)}'" for item in items]
    return out


def form_hint(params_model: type[BaseModel], file_part: str) -> str:
    """What a multipart request to an endpoint taking ``params_model`` must look like, with an example."""
    _, fields = FORM_EXAMPLES.get(params_model.__name__, (file_part, {}))
    names = ", ".join(params_model.model_fields) or "none"
    plain = " ".join([f"-F {file_part}=@FILE", *curl_fields(fields)])
    as_json = f"-F {file_part}=@FILE" + (f" -F 'params={json.dumps(fields)}'" if fields else "")
    return (f"a multipart request takes the file in the part '{file_part}' (curl: -F {file_part}=@FILE, with the @) "
            f"and the parameters either as plain parts, a list by repeating its part ({plain}), or as one JSON "
            f"part 'params' ({as_json}); parameters: {names}")


def multipart_content(params_model: type[BaseModel] | None, file_part: str, description: str) -> dict[str, Any]:
    """The ``multipart/form-data`` media type of an upload endpoint: schema (file, ``params``, plain fields)
    and examples of both ways to send the parameters."""
    properties: dict[str, Any] = {file_part: {"type": "string", "format": "binary", "description": description}}
    media: dict[str, Any] = {"schema": {"type": "object", "required": [file_part], "properties": properties}}
    if params_model is None:
        media["examples"] = {"upload": {"summary": "the file alone", "value": {file_part: "<file>"}}}
        return media
    properties["params"] = {"type": "string", "description": f"a JSON object of {params_model.__name__} (instead of "
                                                             "the plain fields below)"}
    fields = params_model.model_json_schema(ref_template="#/components/schemas/{model}")["properties"]
    properties.update({name: {**spec, "description": spec.get("description", "") + " (plain part; repeat the "
                              "part for each list item)"} for name, spec in fields.items()})
    _, example = FORM_EXAMPLES.get(params_model.__name__, (file_part, {}))
    media["examples"] = {
        "plain fields": {"summary": "parameters as plain parts", "value": {file_part: "<file>", **example}},
        "params part": {"summary": "parameters as one JSON part",
                        "value": {file_part: "<file>", "params": json.dumps(example)}}}
    return media
