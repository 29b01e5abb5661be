"""The agent's prompt texts, shipped as Markdown package data, and a strict renderer for them.

Each prompt is a file ``prompts/<name>.md``. Variables are written ``${name}``; a literal dollar sign
followed by a brace is written ``$${``. A lone ``$`` (as in "$5") is left as it is.

:func:`render_prompt` is strict in both directions: every variable in the file must be supplied, and
every supplied variable must appear in the file, so a renamed placeholder or a misspelt keyword
argument fails loudly instead of producing a silently wrong prompt.

Prompts and their variables (:data:`PROMPT_VARIABLES` holds the same table):

============================  =======================================================================================
``system``                    ``tool_instructions``
``user_query``                ``query``
``after_segment``             ``phrase``, ``num_new_masks``, ``new_mask_ids``, ``tried_phrases``, ``query``
``after_segment_none``        ``phrase``, ``tried_phrases``, ``query``
``after_examine``             ``query``, ``accepted_ids``, ``rejected_ids``
``verify_mask``               ``query``, ``mask_id``
``final_check``               ``query``, ``mask_ids``
``video_system``              ``tool_instructions``
``video_user_query``          ``query``, ``num_frames``, ``width``, ``height``, ``frame_list``
``video_after_segment``       ``phrase``, ``num_new_masklets``, ``new_masklet_ids``, ``keyframes``, ``masklet_list``,
                              ``tried_phrases``, ``query``
``video_after_segment_none``  ``phrase``, ``tried_phrases``, ``query``
``video_after_refine``        ``masklet_id``, ``frame_index``, ``keyframes``, ``masklet_list``, ``query``
============================  =======================================================================================

The ``video_*`` prompts are the video agent's (:mod:`agent.video_agent`).

``verify_mask`` and ``final_check`` ask for the single word ``Accept`` or ``Reject`` on the last line.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

from sam3_core.errors import UsageError

__all__ = [
    "PROMPT_VARIABLES",
    "PromptTemplateError",
    "list_prompts",
    "load_prompt",
    "prompt_variables",
    "render_prompt",
]

_SUFFIX = ".md"

#: The documented variables of every prompt (read-only).
PROMPT_VARIABLES = MappingProxyType(
    {
        "system": frozenset({"tool_instructions"}),
        "user_query": frozenset({"query"}),
        "after_segment": frozenset({"phrase", "num_new_masks", "new_mask_ids", "tried_phrases", "query"}),
        "after_segment_none": frozenset({"phrase", "tried_phrases", "query"}),
        "after_examine": frozenset({"query", "accepted_ids", "rejected_ids"}),
        "verify_mask": frozenset({"query", "mask_id"}),
        "final_check": frozenset({"query", "mask_ids"}),
        "video_system": frozenset({"tool_instructions"}),
        "video_user_query": frozenset({"query", "num_frames", "width", "height", "frame_list"}),
        "video_after_segment": frozenset(
            {"phrase", "num_new_masklets", "new_masklet_ids", "keyframes", "masklet_list", "tried_phrases", "query"}
        ),
        "video_after_segment_none": frozenset({"phrase", "tried_phrases", "query"}),
        "video_after_refine": frozenset({"masklet_id", "frame_index", "keyframes", "masklet_list", "query"}),
    }
)


class PromptTemplateError(UsageError):
    """A prompt does not exist, or was rendered with missing or unexpected variables."""


class _BracedTemplate(string.Template):
    """``string.Template`` that only recognises ``${name}`` and ``$$``; any other ``$`` is plain text."""

    delimiter = "$"
    pattern = r"""
    \$(?:
        (?P<escaped>\$)                          # $$ -> a literal $
      | (?P<named>(?!))                          # bare $name is not a placeholder
      | \{(?P<braced>[_a-z][_a-z0-9]*)\}         # ${name}
      | (?P<invalid>\{)                          # ${ not closing a valid name
    )
    """  # type: ignore[assignment]


def list_prompts() -> list[str]:
    """Names of all prompt files in the package, sorted (``"system"`` for ``system.md``)."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name[: -len(_SUFFIX)] for f in files if f.is_file() and f.name.endswith(_SUFFIX))


@lru_cache(maxsize=64)
def load_prompt(name: str) -> str:
    """The raw text of prompt ``name`` (without the ``.md`` suffix), placeholders left in.

    Raises:
        PromptTemplateError: no such prompt file.
    """
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise PromptTemplateError(f"invalid prompt name {name!r}; use one of {list_prompts()}")
    resource = resources.files(__name__).joinpath(name + _SUFFIX)
    if not resource.is_file():
        raise PromptTemplateError(f"unknown prompt {name!r}; available: {list_prompts()}")
    return resource.read_text(encoding="utf-8")


def prompt_variables(name: str) -> frozenset[str]:
    """The ``${...}`` variables that prompt ``name`` actually contains."""
    template = _BracedTemplate(load_prompt(name))
    found = set()
    for match in template.pattern.finditer(template.template):
        if match.group("invalid") is not None:
            line = template.template.count("\n", 0, match.start()) + 1
            raise PromptTemplateError(f"prompt {name!r}: malformed placeholder on line {line}")
        if match.group("braced") is not None:
            found.add(match.group("braced"))
    return frozenset(found)


def render_prompt(name: str, **variables: object) -> str:
    """Prompt ``name`` with every ``${var}`` replaced by ``str(variables[var])``.

    Raises:
        PromptTemplateError: the prompt does not exist, a variable it uses was not given, or a given variable
            is not used by it. The message names the prompt and the offending variables.
    """
    expected = prompt_variables(name)
    missing = sorted(expected - variables.keys())
    extra = sorted(variables.keys() - expected)
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing variable(s) {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected variable(s) {', '.join(extra)}")
        wanted = ", ".join(sorted(expected)) or "no variables"
        raise PromptTemplateError(f"prompt {name!r}: {'; '.join(problems)} (expects: {wanted})")
    return _BracedTemplate(load_prompt(name)).substitute({k: str(v) for k, v in variables.items()})
