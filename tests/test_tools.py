"""The agent's tools called directly (no graph): schemas, ids and duplicates, model mistakes, verdicts."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
from conftest import random_image
from pydantic import Field

from agent import tool_protocol as tp
from agent.context import Context
from agent.llm import LLMClient, LLMConfig
from agent.settings import AgentSettings
from agent.state import MaskRecord, State, decode_masks, new_query
from agent.testing import Reply, ScriptedLLM
from sam3_core.errors import ModelRetry, UsageError
from sam3_core.postprocess import masks_to_rle
from tools import (
    ALL_TOOLS,
    ToolEnv,
    ToolOutcome,
    examine_each_mask,
    report_no_mask,
    segment_phrase,
    select_masks_and_return,
    tool,
    tools_for,
)
from tools.segmentation import _match_existing, parse_verdict

#: Seed of the test image; not the ``rng`` fixture's seed, so the shared engine's cache stays cold for
#: the engine tests that count cache misses.
AGENT_SEED = 2024
SETTINGS = AgentSettings(score_threshold=0.2)


def run_tool(engine, tool_obj, state: State, args: dict[str, Any] | None = None,
             settings: AgentSettings = SETTINGS, base_url: str = "http://127.0.0.1:9/v1") -> ToolOutcome:
    """Run one tool on the seeded test image with a fresh LLM client."""

    async def go() -> ToolOutcome:
        async with LLMClient(LLMConfig(base_url=base_url, model="scripted-model", api_key="t", max_retries=0)) as llm:
            image = engine.load(random_image(np.random.default_rng(AGENT_SEED)))
            ctx = Context(llm=llm, engine=engine, image=image, settings=settings)
            return await tool_obj.run(ToolEnv(ctx, state), args or {})

    return asyncio.run(go())


def fresh_state(engine, query: str = "the cup") -> State:
    key = engine.load(random_image(np.random.default_rng(AGENT_SEED))).key
    return State(**new_query(query, key))


def apply(state: State, outcome: ToolOutcome) -> State:
    return dataclasses.replace(state, **outcome.update)


def record(mask_id: int, mask: np.ndarray, status: str = "candidate", verified: bool = False) -> MaskRecord:
    return MaskRecord(id=mask_id, phrase="thing", score=0.3, box=[0, 0, 1, 1], area=int(mask.sum()),
                      rle=masks_to_rle(mask[None])[0], status=status, verified=verified)


# ----------------------------------------------------------------------------------------- schemas


def test_docstrings_and_signatures_are_the_schemas():
    assert [t.name for t in ALL_TOOLS] == ["segment_phrase", "examine_each_mask", "select_masks_and_return",
                                           "report_no_mask"]
    for t in ALL_TOOLS:
        assert t.spec.description == inspect.getdoc(t.func)
    openai_tools = tp.to_openai_tools([t.spec for t in ALL_TOOLS])
    schemas = {s["function"]["name"]: s["function"]["parameters"] for s in openai_tools}
    assert schemas["segment_phrase"]["required"] == ["text_prompt"]
    assert schemas["segment_phrase"]["properties"]["text_prompt"]["type"] == "string"
    assert "noun phrase" in schemas["segment_phrase"]["properties"]["text_prompt"]["description"]
    assert schemas["select_masks_and_return"]["properties"]["mask_ids"] == {
        "type": "array", "items": {"type": "integer"}, "minItems": 1,
        "description": "Ids of all masks that make up the answer (from any phrase)."}
    assert schemas["examine_each_mask"]["properties"] == {} and schemas["report_no_mask"]["properties"] == {}
    assert [t.name for t in tools_for(AgentSettings(verification=False))] == [
        "segment_phrase", "select_masks_and_return", "report_no_mask"]


def test_schemas_made_once_are_handed_out_as_copies():
    spec = ALL_TOOLS[2].spec
    first = tp.args_schema(spec.args_model)
    first["properties"]["mask_ids"]["minItems"] = 99  # a caller narrowing its copy (as call_schema does)
    assert tp.args_schema(spec.args_model)["properties"]["mask_ids"]["minItems"] == 1
    assert tp.render_tools_text([spec]) == tp.render_tools_text([tuple(spec)])
    assert json.dumps(tp.args_schema(spec.args_model), ensure_ascii=False) in tp.render_tools_text([spec])


def test_tool_decorator_checks_its_function():
    async def ok(env: ToolEnv, count: Annotated[int, Field(ge=1, description="how many")] = 2) -> ToolOutcome:
        """Do it."""
        return ToolOutcome(text=str(count))

    made = tool(ok)
    assert tp.args_schema(made.spec.args_model)["properties"]["count"] == {
        "type": "integer", "minimum": 1, "default": 2, "description": "how many"}
    assert asyncio.run(made.run(None, {"count": 5})).text == "5"
    with pytest.raises(ModelRetry, match="count"):
        asyncio.run(made.run(None, {"count": 0}))

    def sync(env: ToolEnv) -> ToolOutcome:
        """Sync."""

    async def undocumented(env: ToolEnv) -> ToolOutcome: ...

    async def untyped(env, value) -> ToolOutcome:
        """Untyped."""

    for bad, message in [(sync, "async"), (undocumented, "docstring"), (untyped, "annotation")]:
        with pytest.raises(UsageError, match=message):
            tool(bad)


# ----------------------------------------------------------------------------------------- segment_phrase


def test_segment_phrase_gives_new_ids_and_keeps_rle_only(engine):
    state = fresh_state(engine)
    state = dataclasses.replace(state, next_mask_id=5)
    out = run_tool(engine, segment_phrase, state, {"text_prompt": "  cup "}, AgentSettings(score_threshold=0.2,
                                                                                            iom_threshold=0.8))
    after = apply(state, out)
    ids = [m["id"] for m in after.masks]
    assert ids == list(range(5, 5 + len(ids))) and len(ids) >= 2 and after.next_mask_id == 5 + len(ids)
    assert after.phrases_tried == ["cup"] and out.prune and not out.final
    json.dumps(out.update)  # plain values only
    masks = decode_masks(after.masks, (90, 120))
    direct = engine.segment(random_image(np.random.default_rng(AGENT_SEED)), ["cup"], score_threshold=0.2)[0]
    assert any(np.array_equal(masks[0], m) for m in direct.masks)
    assert f"found {len(ids)} new mask(s): ids {json.dumps(ids)}" in out.text
    assert 'Phrases tried so far: "cup".' in out.text


def test_iom_threshold_thins_overlapping_instances(engine):
    counts = []
    for iom in (0.5, 1.0):
        out = run_tool(engine, segment_phrase, fresh_state(engine), {"text_prompt": "cup"},
                       AgentSettings(score_threshold=0.2, iom_threshold=iom))
        counts.append(len(out.update["masks"]))
    assert counts[0] < counts[1] == 8


def test_duplicates_reuse_existing_ids(engine):
    settings = AgentSettings(score_threshold=0.2, iom_threshold=0.8)
    first = apply(fresh_state(engine), run_tool(engine, segment_phrase, fresh_state(engine), {"text_prompt": "cup"},
                                                settings))
    rejected_id = first.masks[-1]["id"]
    first.masks[-1] = {**first.masks[-1], "status": "rejected"}
    follow_up = dataclasses.replace(first, phrases_tried=[])  # a new query on the same thread
    out = run_tool(engine, segment_phrase, follow_up, {"text_prompt": "cup"}, settings)
    assert out.update["masks"] == first.masks and out.update["next_mask_id"] == first.next_mask_id
    kept = [m["id"] for m in first.masks[:-1]]
    assert "found no new masks" in out.text
    assert f"already found earlier: ids {json.dumps(kept)}" in out.text
    assert f"rejected earlier: ids [{rejected_id}] (still rejected)" in out.text


def test_duplicate_iou_of_one_never_matches_but_just_below_one_does(engine):
    # IoU is at most 1, so duplicate_iou=1 skips the check; identical masks (IoU exactly 1) match below it
    first = apply(fresh_state(engine), run_tool(engine, segment_phrase, fresh_state(engine), {"text_prompt": "cup"},
                                                SETTINGS))
    follow_up = dataclasses.replace(first, phrases_tried=[])
    for threshold, new_masks in ((1.0, len(first.masks)), (0.999, 0)):
        settings = AgentSettings(score_threshold=0.2, duplicate_iou=threshold)
        out = run_tool(engine, segment_phrase, follow_up, {"text_prompt": "cup"}, settings)
        assert len(out.update["masks"]) == len(first.masks) + new_masks


def test_match_existing_agrees_with_full_frame_iou():
    rng = np.random.default_rng(7)
    size = (23, 70)
    existing = np.zeros((6, *size), dtype=bool)
    for i, (y, x) in enumerate(rng.integers(0, 20, size=(6, 2))):
        existing[i, y : y + 3 + i, x : x + 2 * i + 1] = True
    existing[5] = False  # an empty mask on the thread never matches
    new = np.concatenate([existing[[2, 0]], rng.random((3, *size)) < 0.5, np.zeros((1, *size), dtype=bool)])
    new[1, 0, 0] ^= True  # almost a copy of mask 0
    records = [{"id": 10 + i, "rle": rle} for i, rle in enumerate(masks_to_rle(existing))]
    state = State(**{**new_query("q", "k"), "masks": records})
    for threshold in (0.0, 0.5, 0.9, 0.999):
        expected = []
        for mask in new:
            ious = [(mask & e).sum() / max((mask | e).sum(), 1) for e in existing]
            best = int(np.argmax(ious))
            expected.append(10 + best if ious[best] > threshold else None)
        assert _match_existing(state, new, threshold, size) == expected
        cache: dict = {}  # packed copies: decoded once, then taken from the cache
        assert _match_existing(state, new, threshold, size, cache) == expected
        assert sorted(cache) == [("packed_mask", 10 + i) for i in range(6)]
        assert _match_existing(state, new, threshold, size, cache) == expected
    # the cache is what is used: mask 10's packed copy swapped for mask 12's makes mask 2 match id 10
    cache[("packed_mask", 10)] = cache[("packed_mask", 12)]
    assert _match_existing(state, new[:1], 0.5, size, cache) == [10]


def test_repeated_phrase_and_phrase_budget_are_model_retries(engine):
    state = dataclasses.replace(fresh_state(engine), phrases_tried=["cup", "mug"])
    with pytest.raises(ModelRetry, match='already tried "Cup"'):
        run_tool(engine, segment_phrase, state, {"text_prompt": "Cup"})
    with pytest.raises(ModelRetry, match=r"phrase budget \(2 phrases\) is used up"):
        run_tool(engine, segment_phrase, state, {"text_prompt": "glass"}, AgentSettings(max_phrases=2))
    with pytest.raises(ModelRetry, match="text_prompt is empty"):
        run_tool(engine, segment_phrase, state, {"text_prompt": " . "})
    with pytest.raises(ModelRetry, match="text_prompt"):
        run_tool(engine, segment_phrase, state, {})


# ----------------------------------------------------------------------------------------- final answers


def test_select_masks_checks_ids(engine):
    mask = np.zeros((90, 120), dtype=bool)
    mask[10:20, 10:20] = True
    state = dataclasses.replace(fresh_state(engine), masks=[record(1, mask), record(2, mask, "rejected"),
                                                            record(3, mask)])
    with pytest.raises(ModelRetry, match=r"Unknown mask id\(s\) \[2, 7\] \(ids \[2\] were rejected"):
        run_tool(engine, select_masks_and_return, state, {"mask_ids": [1, 2, 7]})
    with pytest.raises(ModelRetry, match="Valid ids are \\[1, 3\\]"):
        run_tool(engine, select_masks_and_return, state, {"mask_ids": [4]})
    with pytest.raises(ModelRetry, match="mask_ids"):
        run_tool(engine, select_masks_and_return, state, {"mask_ids": []})
    out = run_tool(engine, select_masks_and_return, state, {"mask_ids": [3, 1, 3]})
    assert out.final and out.update == {"answer_ids": [3, 1], "status": "answered"}
    with pytest.raises(ModelRetry, match="none: call segment_phrase first"):
        run_tool(engine, select_masks_and_return, fresh_state(engine), {"mask_ids": [1]})


def test_report_no_mask(engine):
    out = run_tool(engine, report_no_mask, fresh_state(engine))
    assert out.final and out.update == {"answer_ids": [], "status": "no_mask"}


# ----------------------------------------------------------------------------------------- examine_each_mask


@pytest.mark.parametrize(("text", "verdict"), [
    ("It is the cup.\nAccept", True), ("Not it.\n**Reject**", False), ("Verdict: accept.", True),
    ("I would reject at first, but it fits.\nAccepted", True), ("<think>Reject?</think>\nAccept", True),
    ("I reject this mask because it is the plate.", False), ("Hard to say.", None), ("", None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) is verdict


def test_examine_each_mask_skips_verified_and_keeps_unclear(engine):
    mask = np.zeros((90, 120), dtype=bool)
    mask[30:60, 40:80] = True
    state = dataclasses.replace(fresh_state(engine), masks=[record(1, mask, verified=True), record(2, mask),
                                                            record(3, mask), record(4, mask, "rejected")])

    def respond(body: dict) -> Reply:
        text = body["messages"][0]["content"][0]["text"]
        return Reply.text("Reject" if "only mask 2 highlighted" in text else "I cannot tell.")

    with ScriptedLLM(responder=respond) as server:
        out = run_tool(engine, examine_each_mask, state, base_url=server.base_url)
    assert len(server.requests) == 2 and not server.errors
    assert {m["id"]: (m["status"], m["verified"]) for m in out.update["masks"]} == {
        1: ("candidate", True), 2: ("rejected", False), 3: ("candidate", False), 4: ("rejected", False)}
    assert "Rejected: [2]" in out.text and "Accepted: none" in out.text
    assert "No clear verdict for ids [3]; they stay candidates." in out.text
    assert out.update["verify_calls"] == 2 and not out.prune and not out.final


def test_examine_each_mask_without_work(engine):
    with pytest.raises(ModelRetry, match="no candidate masks"):
        run_tool(engine, examine_each_mask, fresh_state(engine))
    mask = np.ones((90, 120), dtype=bool)
    state = dataclasses.replace(fresh_state(engine), masks=[record(1, mask, verified=True)])
    out = run_tool(engine, examine_each_mask, state)
    assert "already been examined and accepted: ids [1]" in out.text and out.update == {}


def test_tools_report_sam_time_and_llm_usage_to_the_meter(engine):
    """``ToolEnv.meter`` gets the SAM 3 time of segment_phrase and the verification usage of examine_each_mask."""
    from agent.trace import StepMeter

    async def go(tool_obj, state: State, base_url: str = "http://127.0.0.1:9/v1") -> tuple[ToolOutcome, StepMeter]:
        async with LLMClient(LLMConfig(base_url=base_url, model="scripted-model", api_key="t", max_retries=0)) as llm:
            image = engine.load(random_image(np.random.default_rng(AGENT_SEED)))
            meter = StepMeter()
            env = ToolEnv(Context(llm=llm, engine=engine, image=image, settings=SETTINGS), state, meter)
            return await tool_obj.run(env, {"text_prompt": "cup"} if tool_obj is segment_phrase else {}), meter

    out, meter = asyncio.run(go(segment_phrase, fresh_state(engine)))
    assert meter.sam_s > 0 and meter.model_calls == 0 and meter.model_s == 0
    state = apply(fresh_state(engine), out)
    with ScriptedLLM(responder=lambda body: Reply.text("Accept", prompt_tokens=7, completion_tokens=2)) as server:
        out, meter = asyncio.run(go(examine_each_mask, state, server.base_url))
    assert meter.model_calls == 1 and meter.tokens == 9 and meter.prompt_tokens == 7 and meter.sam_s == 0
    assert meter.verify_s > 0 and meter.model_s == meter.verify_s
    assert out.update["accepted_ids"] == [1]


# ----------------------------------------------------------------------------------------- kinds and layers


def test_every_tool_declares_its_kind_and_the_router_reads_it():
    from agent.graph import route
    from tools import TOOL_KINDS, VIDEO_TOOLS

    assert [t.kind for t in ALL_TOOLS] == ["search", "verify", "answer", "answer"]
    assert [t.kind for t in VIDEO_TOOLS] == ["search", "refine", "answer", "answer"]
    assert set(TOOL_KINDS) == {"search", "verify", "refine", "answer"}

    async def probe(env: ToolEnv) -> ToolOutcome:
        """Probe."""

    assert tool(probe).kind == "search" and tool(kind="refine")(probe).kind == "refine"
    with pytest.raises(UsageError, match="kind must be one of"):
        tool(probe, kind="lookup")  # type: ignore[arg-type]

    def pending(name: str, kind: str) -> State:
        return State(pending_call={"name": name, "kind": kind, "arguments": {}, "id": "c1", "message": {}})

    assert route(pending("examine_each_mask", "answer")) == "run_tool"  # the kind decides, not the name
    assert route(pending("look_closer", "verify")) == "verify_masks"
    assert route(State()) == "call_model" and route(State(status="answered")) == "finish"


def _imports(path: Path) -> set[str]:
    """Top-level package names a module imports (type-checking-only imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_tools_and_state_import_no_upper_layer():
    root = Path(__file__).resolve().parent.parent
    forbidden = {"serving", "eval", "cli", "fastapi", "starlette", "uvicorn", "mcp"}
    for module in sorted((root / "tools").glob("*.py")):
        assert not _imports(module) & forbidden, module.name
    for name in ("state.py", "context.py", "settings.py"):  # the tools import these: no cycle back
        assert "tools" not in _imports(root / "agent" / name), name
    for module in sorted((root / "agent").rglob("*.py")):
        assert not _imports(module) & forbidden, module.name
    import agent.state

    assert agent.state.Context is Context  # the old home still works
