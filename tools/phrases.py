"""Phrases and ids as the image and video tools handle them: how the prompts show ids and phrases, how a phrase
from the model is tidied, and which phrases are refused before SAM 3 runs (:func:`check_phrase`)."""

from __future__ import annotations

from agent.settings import AgentSettings
from agent.state import State
from sam3_core.errors import ModelRetry

#: Longest phrase sent to SAM 3 (its text encoder reads a few dozen tokens; longer is a model mistake).
MAX_PHRASE_CHARS = 200


def format_ids(ids: list[int]) -> str:
    """``[1, 4]`` style, as the prompts show ids."""
    return "[" + ", ".join(str(i) for i in ids) + "]"


def format_phrases(phrases: list[str]) -> str:
    """``"cup", "mug"`` style, or ``(none)``."""
    return ", ".join(f'"{p}"' for p in phrases) or "(none)"


def normalise_phrase(text: str) -> str:
    """``text`` with runs of whitespace collapsed and surrounding punctuation and quotes removed."""
    return " ".join(text.split()).strip(" .,;:\"'`")


def check_phrase(state: State, settings: AgentSettings, phrase: str, *, select_tool: str = "select_masks_and_return",
                 noun: str = "masks") -> None:
    """Refuse an empty, over-long or repeated phrase, or one past the phrase budget (ModelRetry).

    ``select_tool`` and ``noun`` name the answering tool and the candidates in the messages (the video
    agent's are ``select_masklets_and_return`` and ``masklets``).
    """
    tried = state.phrases_tried
    if not phrase:
        raise ModelRetry("text_prompt is empty. Give a short noun phrase such as \"cup\" or \"red car\".")
    if len(phrase) > MAX_PHRASE_CHARS:
        raise ModelRetry(f"text_prompt is {len(phrase)} characters long; give a short noun phrase (at most "
                         f"{MAX_PHRASE_CHARS} characters) such as \"cup\" or \"red car\".")
    if phrase.lower() in {p.lower() for p in tried}:
        raise ModelRetry(
            f'You already tried "{phrase}". Phrases tried so far: {format_phrases(tried)}. Use a different '
            f"phrase, or choose among the current {noun} with {select_tool}."
        )
    if len(tried) >= settings.max_phrases:
        raise ModelRetry(
            f"The phrase budget ({settings.max_phrases} phrases) is used up. Candidate {noun}: "
            f"{format_ids(state.candidate_ids()) if state.candidates() else '(none)'}. "
            f"Call {select_tool} with the matching ids, or report_no_mask."
        )
