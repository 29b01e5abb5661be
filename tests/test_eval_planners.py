"""The ``direct`` planner (SAM 3 alone): the noun-phrase heuristic, its answers, and how runs record it.

Runs use the tiny random checkpoint (scores around 0.25), hence ``score_threshold=0.2``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tolerances import assert_masks_close, assert_scores_close

from agent.llm import LLMConfig
from agent.settings import AgentSettings
from agent.testing import ScriptedLLM
from eval.planners import DirectSettings, direct_answer, noun_phrase, planner_name, tokenize
from eval.records import PREDICTIONS_FILE, ConfigMismatch
from eval.report import decode_record_masks
from eval.runner import RunOptions, run_config, run_eval
from eval.tasks import TaskSpec, load_task
from eval.testing import AgentScript, write_omnilabel, write_reasonseg
from sam3_core.errors import InputError, UsageError

DIRECT = DirectSettings(score_threshold=0.2)

EXAMPLES = [
    # plain noun phrases: leading articles go, relative clauses and prepositional phrases are cut
    ("dog", "dog"),
    ("the red car", "red car"),
    ("The woman's handbag", "woman's handbag"),
    ("man on the left", "man"),
    ("left guy", "left guy"),
    ("guy in red shirt", "guy"),
    ("second from left", "second"),
    ("the dog lying on the left", "dog"),
    ("a purple umbrella that nobody holds", "purple umbrella"),
    ("the rim of the wheel", "rim"),
    ("the tall building on the corner", "tall building"),
    ("the man and the woman", "man"),
    ("the place where the cat usually sleeps", "place"),
    ("the thing that keeps the rain off people's heads in this picture", "thing"),
    # a relative clause without "that": a new determiner or a verb ends the phrase
    ("the cup the woman is about to drink from", "cup"),
    ("the cup you drink from", "cup"),
    ("a man wearing a hat", "man"),
    # "of" after a quantity word is kept
    ("a pair of shoes near the door", "pair of shoes"),
    ("a group of people standing in line", "group of people"),
    # requests and quantifiers at the start
    ("Please segment the red car.", "red car"),
    ("Can you find the dog that is sleeping?", "dog"),
    ("there is a cat on the sofa", "cat"),
    ("is there a cat on the sofa?", "cat"),
    ("one of the dogs in the grass", "dogs"),
    ("Show me every bottle, please", "bottle"),
    # questions
    ("Which object here could show you the time?", "object"),
    ("which of the cars is red", "cars"),
    ("Where is the remote control?", "remote control"),
    ("What part of the dog can be used for smelling?", "part"),
    ("Who is the tallest man here?", "tallest man"),
    ("who is holding the umbrella?", "person"),
    # no object named: the fallback (the words, function words trimmed, at most max_words)
    ("What would you sit on while waiting for the bus?", "sit"),
    ("What is used to cut paper?", "cut paper"),
    ("the", "the"),
    # at most max_words (6) words
    ("an extremely long and winding road", "extremely long"),
    ("big old rusty red metal farm tractor", "big old rusty red metal farm"),
]


@pytest.mark.parametrize(("query", "phrase"), EXAMPLES)
def test_noun_phrase(query: str, phrase: str):
    assert noun_phrase(query) == phrase


def test_noun_phrase_limits_and_errors():
    assert noun_phrase("big old rusty red tractor", max_words=2) == "big old"
    long_question = "What would you sit on while waiting for the bus?"
    assert noun_phrase(long_question, max_words=12) == "sit on while waiting for the bus"
    assert tokenize("The Woman’s hat, please!") == ["the", "woman's", "hat", ",", "please", "!"]
    with pytest.raises(InputError, match="no words"):
        noun_phrase(" ?! ")
    with pytest.raises(UsageError, match="max_words"):
        noun_phrase("dog", max_words=0)


def test_direct_settings():
    assert DIRECT.for_task(ranked_detections=True).keep == "all"
    assert DIRECT.for_task(ranked_detections=False).keep == "best"
    assert DirectSettings(keep="all").for_task(False).keep == "all"  # an explicit choice stays
    assert planner_name(DIRECT) == "direct" and planner_name(AgentSettings()) == "agent"
    for bad in ({"max_words": 0}, {"keep": "some"}, {"score_threshold": 1.0}):
        with pytest.raises(UsageError):
            DirectSettings(**bad)
    with pytest.raises(UsageError, match="for_task"):
        asyncio.run(direct_answer(None, "x.jpg", "dog", DIRECT))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("planner_data")
    return {"reasonseg": write_reasonseg(root / "reasonseg"), "omnilabel": write_omnilabel(root / "omnilabel")}


def direct_run(engine, data: dict[str, Path], dataset: str, out: Path, settings: DirectSettings = DIRECT,
               **options: Any) -> dict[str, Any]:
    task = load_task(TaskSpec(dataset, str(data[dataset]), "val"))
    run_options = RunOptions(**{"concurrency": 4, "progress": False, **options})
    return asyncio.run(run_eval(task, out, engine, None, sam3_model="tiny", settings=settings, options=run_options))


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / PREDICTIONS_FILE).read_text().splitlines()]


def test_direct_reasonseg_takes_the_best_mask(engine, data, tmp_path):
    out = tmp_path / "run"
    report = direct_run(engine, data, "reasonseg", out)
    task = load_task(TaskSpec("reasonseg", str(data["reasonseg"]), "val"))
    items = {item.id: item for item in task.items()}
    answered = 0
    for record in records(out):
        item = items[record["id"]]
        phrase = noun_phrase(item.query)
        (found,) = engine.segment(item.image_path, [phrase], score_threshold=0.2)
        assert record["llm_calls"] == record["steps"] == record["total_tokens"] == 0 and record["ok"]
        if len(found):
            answered += 1
            assert record["status"] == "answered" and record["phrases"] == [phrase]
            assert len(record["scores"]) == 1  # the best, and only it
            assert_scores_close(record["scores"], found.scores[:1])  # the run batched it with other queries
            assert_masks_close(decode_record_masks(record)[0], found.masks[0])
        else:
            assert record["status"] == "no_mask" and record["masks"] == [] and record["iou"] == 0.0
    assert answered >= 2  # the tiny model finds something for most phrases at 0.2
    assert report["samples"]["ok"] == 4 and report["cost_per_query"]["mean_llm_calls"] == 0.0
    assert report["planner"] == "direct" and report["llm"] is None
    config = json.loads((out / "run.json").read_text())
    assert config["planner"] == "direct" and config["llm"] is None
    assert config["settings"] == {"score_threshold": 0.2, "max_words": 6, "keep": "best"}
    assert "planner: direct" in (out / "report.md").read_text()


def test_direct_omnilabel_keeps_every_instance(engine, data, tmp_path):
    out = tmp_path / "run"
    report = direct_run(engine, data, "omnilabel", out)
    task = load_task(TaskSpec("omnilabel", str(data["omnilabel"]), "val"))
    items = {item.id: item for item in task.items()}
    many = 0
    for record in records(out):
        phrase = noun_phrase(record["query"])
        (found,) = engine.segment(items[record["id"]].image_path, [phrase], score_threshold=0.2)
        assert record["phrases"] == [phrase] * len(found)
        assert_scores_close(record["scores"], found.scores)
        assert len(record["detections"]) <= len(found)
        many += len(found) > 1
    assert many >= 1  # several ranked detections for at least one description
    assert json.loads((out / "run.json").read_text())["settings"]["keep"] == "all"
    assert "AP" in report["metrics"]


def test_planner_is_part_of_the_run_configuration(engine, data, tmp_path):
    out = tmp_path / "run"
    direct_run(engine, data, "reasonseg", out, limit=1)
    with pytest.raises(ConfigMismatch, match=r"settings\.max_words: 6 -> 3"):
        direct_run(engine, data, "reasonseg", out, DirectSettings(score_threshold=0.2, max_words=3))
    task = load_task(TaskSpec("reasonseg", str(data["reasonseg"]), "val"))
    with ScriptedLLM(responder=AgentScript()) as server:
        llm = LLMConfig(base_url=server.base_url, model=server.model, api_key="t", max_retries=0)
        with pytest.raises(ConfigMismatch, match=r"planner: 'direct' -> 'agent'"):
            asyncio.run(run_eval(task, out, engine, llm, sam3_model="tiny", settings=AgentSettings(score_threshold=0.2),
                                 options=RunOptions(progress=False)))
        assert not server.requests
    direct_run(engine, data, "reasonseg", out, limit=2)  # the same configuration resumes
    assert len(records(out)) == 2
    with pytest.raises(UsageError, match="needs an LLM"):
        asyncio.run(run_eval(task, tmp_path / "other", engine, None, sam3_model="tiny"))


def test_run_json_without_a_planner_resumes_as_an_agent_run(engine, data, tmp_path):
    """Runs made before the planner option have no "planner" key: they are agent runs."""
    out = tmp_path / "run"
    task = load_task(TaskSpec("reasonseg", str(data["reasonseg"]), "val"))
    settings = AgentSettings(score_threshold=0.2)
    with ScriptedLLM(responder=AgentScript()) as server:
        llm = LLMConfig(base_url=server.base_url, model=server.model, api_key="t", max_retries=0)
        run = lambda limit: run_eval(task, out, engine, llm, sam3_model="tiny", settings=settings,  # noqa: E731
                                     options=RunOptions(limit=limit, progress=False))
        asyncio.run(run(1))
        config = json.loads((out / "run.json").read_text())
        assert config["planner"] == "agent"
        del config["planner"]
        (out / "run.json").write_text(json.dumps(config))
        report = asyncio.run(run(2))
    assert report["samples"]["scored"] == 2 and report["planner"] == "agent"
    assert run_config(task, "tiny", None, "", DIRECT)["settings"]["keep"] == "best"
