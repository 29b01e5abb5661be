"""Tests for the prompts package: package data, documented variables, strict rendering."""

from __future__ import annotations

import re
from importlib import resources

import pytest

import prompts
from prompts import (
    PROMPT_VARIABLES,
    PromptTemplateError,
    list_prompts,
    load_prompt,
    prompt_variables,
    render_prompt,
)
from sam3_core.errors import UsageError

REQUIRED = {"system", "after_segment", "verify_mask"}


def _sample_values(name: str) -> dict[str, str]:
    return {var: f"<{var}-value>" for var in PROMPT_VARIABLES[name]}


def test_package_data_found_via_importlib_resources() -> None:
    root = resources.files("prompts")
    names = {entry.name for entry in root.iterdir()}
    assert {f"{name}.md" for name in REQUIRED} <= names
    assert root.joinpath("system.md").read_text(encoding="utf-8") == load_prompt("system")


def test_list_prompts_matches_documented_table() -> None:
    assert set(list_prompts()) >= REQUIRED
    assert set(list_prompts()) == set(PROMPT_VARIABLES)
    assert list_prompts() == sorted(list_prompts())


@pytest.mark.parametrize("name", sorted(PROMPT_VARIABLES))
def test_prompt_uses_exactly_its_documented_variables(name: str) -> None:
    assert prompt_variables(name) == PROMPT_VARIABLES[name]


@pytest.mark.parametrize("name", sorted(PROMPT_VARIABLES))
def test_every_prompt_renders_with_its_variables(name: str) -> None:
    values = _sample_values(name)
    text = render_prompt(name, **values)
    for value in values.values():
        assert value in text
    assert "${" not in text
    assert len(text.strip()) > 50


@pytest.mark.parametrize("name", sorted(PROMPT_VARIABLES))
def test_missing_variable_raises_naming_it(name: str) -> None:
    for dropped in PROMPT_VARIABLES[name]:
        values = _sample_values(name)
        del values[dropped]
        with pytest.raises(PromptTemplateError, match=rf"{name}.*missing variable\(s\) [^(]*\b{dropped}\b"):
            render_prompt(name, **values)


@pytest.mark.parametrize("name", sorted(PROMPT_VARIABLES))
def test_extra_variable_raises_naming_it(name: str) -> None:
    with pytest.raises(PromptTemplateError, match=rf"{name}.*unexpected variable\(s\) [^(]*\bqeury\b"):
        render_prompt(name, **_sample_values(name), qeury="typo")


def test_error_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        render_prompt("verify_mask", query="x")


def test_unknown_and_invalid_names_raise() -> None:
    with pytest.raises(PromptTemplateError, match="unknown prompt"):
        load_prompt("does_not_exist")
    with pytest.raises(PromptTemplateError, match="invalid prompt name"):
        load_prompt("../pyproject")
    with pytest.raises(PromptTemplateError):
        render_prompt("does_not_exist")


def test_values_are_not_rescanned_and_stringified() -> None:
    text = render_prompt("verify_mask", query="costs ${price} and $5", mask_id=7)
    assert "costs ${price} and $5" in text
    assert "mask 7" in text


def test_template_syntax() -> None:
    template = prompts._BracedTemplate("a $$ b ${x} $5 $y")
    assert template.substitute(x="X") == "a $ b X $5 $y"


def test_system_prompt_has_tool_instructions_slot_and_mentions_tools() -> None:
    text = load_prompt("system")
    for tool in ("segment_phrase", "examine_each_mask", "select_masks_and_return", "report_no_mask"):
        assert tool in text
    assert "${tool_instructions}" in text
    assert re.search(r"exactly one tool call", text, re.IGNORECASE)


@pytest.mark.parametrize("name", ["verify_mask", "final_check"])
def test_verdict_prompts_ask_for_accept_or_reject_on_last_line(name: str) -> None:
    text = load_prompt(name)
    assert "`Accept`" in text and "`Reject`" in text
    assert "last line" in text


def test_no_module_level_mutable_state() -> None:
    with pytest.raises(TypeError):
        PROMPT_VARIABLES["new"] = frozenset()  # type: ignore[index]
    assert all(isinstance(v, frozenset) for v in PROMPT_VARIABLES.values())
