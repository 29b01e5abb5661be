"""Multipart forms: the parameters of an upload as one JSON part ``params`` and/or as plain parts.

``curl -F image=@x.jpg -F phrases=dog -F phrases=cat -F score_threshold=0.4`` and
``curl -F image=@x.jpg -F 'params={"phrases": ["dog", "cat"], "score_threshold": 0.4}'`` mean the same.
A list field takes one part per item (``-F phrases=dog -F phrases=cat``) or one JSON list
(``-F 'points=[[10, 20]]'``); a number, boolean or object part is read as JSON, a text part as it is.
Anything else (an unknown part, a field given twice, the file missing or sent as text) is refused with a
message that says which parts the endpoint takes and shows an example (:func:`serving.http.examples.form_hint`).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from serving.http.errors import ApiError
from serving.http.examples import form_hint

P = TypeVar("P", bound=BaseModel)
#: Most text parts a form may have (a phrase list of 32 sent as plain parts, plus the other fields).
MAX_FIELDS = 64


def validate_json(model: type[P], raw: bytes | str, loc: tuple[str, ...]) -> P:
    """``model`` from JSON text; a mismatch raises ``RequestValidationError`` located at ``loc``."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": (*loc, *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


def text_parts(form: FormData) -> list[tuple[str, str]]:
    """``(name, value)`` of every text (non-file) part of ``form``, in order."""
    return [(name, value) for name, value in form.multi_items() if isinstance(value, str)]


def form_error(message: str, params_model: type[BaseModel], file_part: str) -> ApiError:
    """422 ``bad_form``: ``message``, then what the endpoint's form looks like."""
    return ApiError(422, f"{message}; {form_hint(params_model, file_part)}", "bad_form")


def _field_kind(spec: dict[str, Any]) -> tuple[bool, bool]:
    """``(is_list, is_text)`` of a field's JSON schema (the non-null branch of an optional field)."""
    branches = [b for b in spec.get("anyOf", [spec]) if b.get("type") != "null"]
    branch = branches[0] if branches else spec
    if branch.get("type") == "array":
        return True, branch.get("items", {}).get("type") == "string"
    return False, branch.get("type") == "string"


def _value(raw: str, text: bool) -> Any:
    """A plain part's value: text fields as they are, others parsed as JSON (left as text when not JSON,
    so the model's validation names the field)."""
    if text:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _plain_fields(parts: list[tuple[str, str]], params_model: type[BaseModel], file_part: str) -> dict[str, Any]:
    properties = params_model.model_json_schema()["properties"]
    grouped: dict[str, list[str]] = {}
    for name, raw in parts:
        if name not in properties:
            raise form_error(f"unknown part {name!r}", params_model, file_part)
        grouped.setdefault(name, []).append(raw)
    fields: dict[str, Any] = {}
    for name, values in grouped.items():
        is_list, text = _field_kind(properties[name])
        if is_list and len(values) == 1 and values[0].lstrip().startswith("["):
            fields[name] = json.loads(values[0]) if _is_json(values[0]) else values
        elif is_list:
            fields[name] = [_value(v, text) for v in values]
        elif len(values) > 1:
            raise form_error(f"the part {name!r} was sent {len(values)} times; it takes one value",
                             params_model, file_part)
        else:
            fields[name] = _value(values[0], text)
    return fields


def _is_json(raw: str) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def params_from_form(parts: list[tuple[str, str]], params_model: type[P], file_part: str) -> P:
    """Validate the text parts of a form (all but the file) as ``params_model``.

    Args:
        parts: ``(name, value)`` of every text part, in order (a part may repeat).
        params_model: the endpoint's parameter model.
        file_part: the name of the file part (for the hint).

    Returns:
        An instance of ``params_model``. A malformed ``params`` part, an unknown part or a field given
        both in ``params`` and as a plain part is a 422 with the hint; a value of the wrong type is the
        usual 422 located at the field.
    """
    raw_params = [value for name, value in parts if name == "params"]
    if len(raw_params) > 1:
        raise form_error("the part 'params' was sent more than once", params_model, file_part)
    merged: dict[str, Any] = {}
    if raw_params and raw_params[0].strip():
        try:
            merged = json.loads(raw_params[0])
        except ValueError as exc:
            raise form_error(f"the part 'params' is not valid JSON ({exc})", params_model, file_part) from exc
        if not isinstance(merged, dict):
            raise form_error("the part 'params' must be a JSON object", params_model, file_part)
    plain = _plain_fields([(n, v) for n, v in parts if n != "params"], params_model, file_part)
    twice = sorted(set(plain) & set(merged))
    if twice:
        raise form_error(f"{', '.join(map(repr, twice))} given both in 'params' and as a plain part",
                         params_model, file_part)
    return validate_json(params_model, json.dumps({**merged, **plain}), ("body", "params"))
