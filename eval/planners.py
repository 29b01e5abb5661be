"""Who answers a benchmark query: the agent (an LLM using SAM 3) or SAM 3 alone (the ``direct`` planner).

``--planner agent`` (the default) runs :func:`agent.runner.run_agent` on every query. ``--planner
direct`` is the "SAM 3 alone" baseline that the agent is compared with, and needs no LLM at all: the
query is reduced to its main noun phrase by :func:`noun_phrase` (a small heuristic, below), that
phrase goes straight to SAM 3, and the answer is

* for mask benchmarks (ReasonSeg, RefCOCO): the single best-scoring mask above the score threshold
  (``keep="best"``): gIoU / cIoU score one region, and a union of every instance would mostly add
  false positives;
* for OmniLabel: every instance above the score threshold, each with its SAM 3 score (``keep="all"``):
  AP ranks detections by score, so the baseline hands in all of them as the raw detector would. Lower
  ``--score-threshold`` for more recall.

When nothing scores above the threshold the sample is ``no_mask`` (an empty prediction). Pass
``--score-threshold 0`` to always take SAM 3's top mask. Direct answers are :class:`AgentAnswer` objects
like the agent's (status ``answered`` / ``no_mask``, ``steps`` and ``llm_calls`` 0), so records and
reports look the same; ``run.json`` records ``"planner": "direct"`` and the :class:`DirectSettings`.

The noun-phrase heuristic (no LLM, no parser), applied to the lower-cased words of the query:

1. drop lead-ins at the start, repeatedly: requests (``please``, ``can you``, ``segment``, ``find``,
   ``show me``, ``highlight``, ...), ``there is`` / ``is there``, and ``one of`` / ``all of`` ...;
2. drop a leading question word (``what``, ``which``, ``who``, ``where``, ...), then ``of`` or a
   copula after it (``which of the cars``, ``where is the``). If a modal or auxiliary follows instead
   (``what would you ...``, ``what can ...``), the question names no object: go to step 5;
   a ``who`` question that names none asks for ``person``;
3. drop leading determiners (``the``, ``a``, ``this``, ``his``, ...);
4. keep words up to the first boundary: punctuation, a relative word (``that``, ``which``, ``who``,
   ``where``, ``while``, ...), a preposition (``with``, ``on``, ``in``, ``near``, ``of``, ...), a
   conjunction, a determiner (a new noun phrase: ``the cup the woman is holding``), a verb form
   (``is``, ``can``, ``has``, ``holding``, ``wearing``, ``parked``, ...), a pronoun or ``here`` /
   ``there``; ``of`` is kept after a quantity word (``pair of shoes``, ``group of people``). At most
   ``max_words`` words. That is the phrase when it is not empty;
5. otherwise (fallback): the words after step 1 (and the question word), with function words trimmed
   from both ends, cut to ``max_words`` (trimmed again); if nothing is left, the query's first
   ``max_words`` words.

Examples: ``"the cup the woman is about to drink from"`` -> ``cup``; ``"man on the left"`` -> ``man``;
``"Which object here could show you the time?"`` -> ``object``; ``"a pair of shoes near the door"``
-> ``pair of shoes``; ``"What would you sit on while waiting for the bus?"`` -> ``sit`` (the fallback).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from sam3_core.errors import InputError, UsageError

if TYPE_CHECKING:  # the agent and the engine load torch: imported where used, so the CLI starts fast
    from agent.runner import AgentAnswer
    from agent.settings import AgentSettings
    from sam3_core.engine import Sam3Engine

PLANNERS = ("agent", "direct")
DEFAULT_PLANNER = "agent"
DEFAULT_MAX_WORDS = 6
Keep = Literal["auto", "best", "all"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _phrases(*texts: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(text.split()) for text in texts)


_LEAD_INS = _phrases(
    "please", "kindly", "can you", "could you", "would you", "will you", "help me", "i want to", "i want",
    "i need to", "i need", "segment", "find", "show me", "show", "highlight", "locate", "identify", "detect",
    "mark", "point out", "point to", "select", "give me", "tell me", "look for", "search for", "outline",
    "there is", "there are", "is there", "are there", "how many", "how much", "one of", "some of", "all of",
    "any of", "each of", "both of", "either of", "none of",
)
_QUESTIONS = _words("what which who whom whose where how")
_COPULAS = _words("is are was were 's")
_AUXILIARIES = _words("am be been being can could will would shall should may might must do does did has have had")
_DETERMINERS = _words("the a an this that these those some any each every all both its their his her my your our")
_RELATIVES = _words("that which who whom whose where when while whereas because if so than as like")
_PREPOSITIONS = _words(
    "with without on in into onto near at by behind under underneath beneath over above below beside besides next "
    "to from of for between among inside outside within around across along against toward towards through up "
    "down off out past after before during about via atop upon"
)
_CONJUNCTIONS = _words("and or but nor")
_PRONOUNS = _words("i you he she it we they me him us them someone somebody something people here there now "
                   "currently usually often always")
_PARTICIPLES = _words(
    "holding wearing sitting standing carrying riding walking lying laying eating drinking looking playing running "
    "using facing hanging leaning reading talking watching waiting covering containing showing having making "
    "pointing throwing swinging jumping flying parked covered filled placed located painted made used shown seen "
    "attached surrounded stacked dressed closest nearest furthest farthest"
)
_QUANTITIES = _words("pair pairs piece pieces group groups bunch set sets couple slice slices stack pile herd flock "
                     "row rows lot lots")
_BOUNDARIES = (_RELATIVES | _PREPOSITIONS | _CONJUNCTIONS | _DETERMINERS | _COPULAS | _AUXILIARIES | _PRONOUNS
               | _PARTICIPLES)
_FUNCTION_WORDS = _BOUNDARIES | _QUESTIONS
_TOKEN = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*|[^\sa-z0-9]")


def tokenize(query: str) -> list[str]:
    """Lower-cased words (inner hyphens and apostrophes kept) and single punctuation marks."""
    return _TOKEN.findall(query.lower().replace("’", "'"))


def _is_word(token: str) -> bool:
    return token[0].isalnum()


def _strip_lead_ins(tokens: list[str]) -> list[str]:
    """``tokens`` without leading requests and quantifiers (step 1)."""
    changed = True
    while changed and tokens:
        changed = False
        for lead in _LEAD_INS:
            if tuple(tokens[: len(lead)]) == lead and len(tokens) > len(lead):
                tokens, changed = tokens[len(lead):], True
                break
    return tokens


def _strip_question(tokens: list[str]) -> tuple[list[str], str, bool]:
    """Drop a leading question word (step 2): the rest, the word ("" if none) and whether an object may follow."""
    if not tokens or tokens[0] not in _QUESTIONS:
        return tokens, "", True
    word, rest = tokens[0], tokens[1:]
    if rest and (rest[0] == "of" or rest[0] in _COPULAS):
        return rest[1:], word, True
    return rest, word, not rest or rest[0] not in _AUXILIARIES


def _head_phrase(tokens: list[str], max_words: int) -> list[str]:
    """Steps 3 and 4: the words of the leading noun phrase (empty when it starts with a boundary)."""
    start = 0
    while start < len(tokens) and tokens[start] in _DETERMINERS:
        start += 1
    phrase: list[str] = []
    for token in tokens[start:]:
        if len(phrase) >= max_words or not _is_word(token):
            break
        if token == "of" and phrase and phrase[-1] in _QUANTITIES:
            phrase.append(token)
            continue
        if token in _BOUNDARIES and not (phrase and phrase[-1] == "of"):
            break
        phrase.append(token)
    while phrase and phrase[-1] == "of":
        phrase.pop()
    return phrase


def _trim(words: list[str]) -> list[str]:
    """``words`` without function words at either end."""
    start, end = 0, len(words)
    while start < end and words[start] in _FUNCTION_WORDS:
        start += 1
    while end > start and words[end - 1] in _FUNCTION_WORDS:
        end -= 1
    return words[start:end]


def noun_phrase(query: str, max_words: int = DEFAULT_MAX_WORDS) -> str:
    """The main noun phrase of ``query`` by the heuristic of this module's docstring (at most ``max_words``).

    Raises:
        InputError: the query has no words.
        UsageError: ``max_words`` < 1.
    """
    if max_words < 1:
        raise UsageError(f"max_words must be >= 1, got {max_words}")
    tokens = tokenize(query)
    words = [t for t in tokens if _is_word(t)]
    if not words:
        raise InputError(f"query {query!r} has no words to segment")
    rest, question, names_object = _strip_question(_strip_lead_ins(tokens))
    phrase = _head_phrase(rest, max_words) if names_object else []
    if not phrase and question in ("who", "whom"):
        return "person"
    if not phrase:
        phrase = _trim(_trim([t for t in rest if _is_word(t)])[:max_words])
    return " ".join(phrase or words[:max_words])


@dataclass(frozen=True)
class DirectSettings:
    """Settings of the ``direct`` planner (recorded in ``run.json``; a resumed run must use the same).

    Attributes:
        score_threshold: SAM 3 instance score threshold (instances at or below it are not answers).
        max_words: most words of the noun phrase sent to SAM 3 (see :func:`noun_phrase`).
        keep: ``best`` (the top mask), ``all`` (every instance above the threshold), or ``auto``
            (``all`` for benchmarks scored as ranked detections, i.e. OmniLabel; ``best`` otherwise),
            resolved by :meth:`for_task` before a run starts.
    """

    score_threshold: float = 0.5
    max_words: int = DEFAULT_MAX_WORDS
    keep: Keep = "auto"

    def __post_init__(self) -> None:
        if self.max_words < 1 or self.keep not in ("auto", "best", "all") or not 0 <= self.score_threshold < 1:
            raise UsageError("direct planner: max_words must be >= 1, keep auto/best/all, score_threshold in [0, 1)")

    def for_task(self, ranked_detections: bool) -> DirectSettings:
        """A copy with ``keep`` resolved (``ranked_detections``: the task scores answers as detections)."""
        if self.keep != "auto":
            return self
        return replace(self, keep="all" if ranked_detections else "best")


if TYPE_CHECKING:
    #: What picks the planner of a run: agent settings or direct settings.
    PlannerSettings = AgentSettings | DirectSettings


def planner_name(settings: PlannerSettings) -> str:
    """``"direct"`` for :class:`DirectSettings`, else ``"agent"``."""
    return "direct" if isinstance(settings, DirectSettings) else "agent"


async def direct_answer(engine: Sam3Engine, image: str | Path, query: str, settings: DirectSettings,
                        phrase: str | None = None) -> AgentAnswer:
    """Answer ``query`` with SAM 3 alone: its noun phrase (or ``phrase`` as given), one SAM 3 call, the best
    (or every) instance."""
    from agent.llm import Usage
    from agent.runner import AgentAnswer

    if settings.keep == "auto":
        raise UsageError("resolve DirectSettings.keep with for_task() first")
    started = time.perf_counter()
    phrase = phrase or noun_phrase(query, settings.max_words)
    (result,) = await engine.asegment(image, [phrase], score_threshold=settings.score_threshold)
    wall = time.perf_counter() - started
    count = min(len(result), 1) if settings.keep == "best" else len(result)  # scores are sorted high to low
    return AgentAnswer(
        query=query, status="answered" if count else "no_mask", mask_ids=list(range(1, count + 1)),
        masks=np.asarray(result.masks[:count], dtype=bool),
        boxes=np.asarray(result.boxes[:count], dtype=np.float32).reshape(-1, 4),
        scores=[float(s) for s in result.scores[:count]], phrases=[phrase] * count, error="", steps=0,
        verify_calls=0, phrases_tried=[phrase], thread_id="", usage=Usage(),
        timings={"wall_s": wall, "sam_s": wall, "model_s": 0.0, "model_calls": 0, "tokens": 0},
    )
