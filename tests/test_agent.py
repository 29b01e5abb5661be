"""The whole agent graph over real HTTP: a scripted OpenAI-compatible server and the tiny SAM 3 engine.

The tiny checkpoint has random weights (every score is about 0.25), so the agent runs with
``score_threshold=0.2``. With the seeded test image, "cup" and "woman" each give one mask after
overlap removal, and the two masks are different objects (IoU well below the duplicate threshold).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
from typing import Annotated, Any

import numpy as np
import pytest
from conftest import random_image
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

from agent.graph import build_graph, recursion_limit
from agent.llm import LLMClient, LLMConfig
from agent.runner import AgentAnswer, run_agent, run_agent_sync
from agent.settings import AgentSettings
from agent.state import new_query, state_from_values
from agent.testing import Reply, ScriptedLLM, image_urls, message_texts
from sam3_core.errors import RunFailed, UsageError
from tools.registry import ToolEnv, ToolOutcome, tool

#: Seed of the test image; not the ``rng`` fixture's seed, so the shared engine's cache stays cold for
#: the engine tests that count cache misses.
AGENT_SEED = 2024
SETTINGS = AgentSettings(score_threshold=0.2)
PROTOCOLS = ["native", "text"]


def call(name: str, protocol: str = "text", **arguments: Any) -> Reply:
    """A scripted reply calling ``name`` in the given tool protocol."""
    if protocol == "native":
        return Reply.call(name, **arguments)
    body = json.dumps({"name": name, "arguments": arguments})
    return Reply.text(f"I will call {name}.\n<tool_call>{body}</tool_call>")


def config(server: ScriptedLLM, protocol: str = "text") -> LLMConfig:
    return LLMConfig(base_url=server.base_url, model=server.model, api_key="test", timeout_s=20.0,
                     max_retries=0, tool_protocol=protocol)


def run(engine, server: ScriptedLLM, query: str = "the cup", protocol: str = "text",
        settings: AgentSettings = SETTINGS, **kw: Any) -> AgentAnswer:
    """One query through the sync entry point, on the seeded test image."""
    image = kw.pop("image", None)
    image = random_image(np.random.default_rng(AGENT_SEED)) if image is None else image
    return run_agent_sync(engine, config(server, protocol), image, query, settings=settings, **kw)


def all_text(body: dict) -> str:
    return "\n".join(message_texts(body))


@pytest.fixture
def server():
    with ScriptedLLM() as srv:
        yield srv
    assert not srv.errors, srv.errors


# ----------------------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_segment_then_select(engine, server, protocol):
    server.add(call("segment_phrase", protocol, text_prompt="cup"),
               call("select_masks_and_return", protocol, mask_ids=[1]))
    answer = run(engine, server, protocol=protocol)
    assert answer.status == "answered" and answer.ok
    assert answer.mask_ids == [1] and answer.phrases == ["cup"]
    assert answer.masks.shape == (1, 90, 120) and answer.masks.dtype == bool and answer.mask.any()
    assert answer.boxes.shape == (1, 4) and answer.steps == 2 and answer.usage.calls == 2
    answer.raise_for_status()
    first, second = server.requests
    if protocol == "native":
        assert {t["function"]["name"] for t in first["tools"]} >= {"segment_phrase", "select_masks_and_return"}
        tool_msg = next(m for m in second["messages"] if m["role"] == "tool")
        assistant = next(m for m in second["messages"] if m["role"] == "assistant")
        assert tool_msg["tool_call_id"] == assistant["tool_calls"][0]["id"]
        assert "found 1 new mask(s): ids [1]" in tool_msg["content"]
    else:
        assert "tools" not in first
        assert "<tool_call>" in message_texts(first, "system")[0]
        assert '<tool_response>\n`segment_phrase("cup")` found 1 new mask(s)' in all_text(second)


def test_masks_from_two_phrases_keep_their_ids(engine, server):
    server.add(call("segment_phrase", text_prompt="cup"), call("segment_phrase", text_prompt="woman"),
               call("select_masks_and_return", mask_ids=[2, 1]))
    answer = run(engine, server)
    assert answer.mask_ids == [2, 1] and answer.phrases == ["woman", "cup"]
    assert not np.array_equal(answer.masks[0], answer.masks[1])
    assert "found 1 new mask(s): ids [2]" in all_text(server.requests[2])
    assert answer.phrases_tried == ["cup", "woman"]


def test_report_no_mask(engine, server):
    server.add(call("segment_phrase", text_prompt="giraffe"), call("report_no_mask"))
    answer = run(engine, server, query="the giraffe")
    assert answer.status == "no_mask" and answer.ok
    assert answer.mask_ids == [] and answer.masks.shape == (0, 90, 120) and not answer.mask.any()
    answer.raise_for_status()


# ----------------------------------------------------------------------------------------- verification


def verifier(reject: set[int], parties: int, seen: list[int]):
    """A responder answering verification requests by the mask id they name, only once all arrived."""
    barrier = threading.Barrier(parties, timeout=5)
    lock = threading.Lock()

    def respond(body: dict) -> Reply | None:
        found = re.search(r"with only mask (\d+) highlighted", all_text(body))
        if found is None:
            return None  # a main-loop request: use the script
        mask_id = int(found.group(1))
        with lock:
            seen.append(mask_id)
        barrier.wait()  # raises (-> HTTP 500, test fails) unless all requests are in flight together
        return Reply.text(f"Mask {mask_id} looks {'wrong' if mask_id in reject else 'right'}.\n"
                          + ("Reject" if mask_id in reject else "**Accept**"))

    return respond


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_examine_each_mask_verifies_concurrently_and_drops_rejected(engine, server, protocol):
    seen: list[int] = []
    server.responder = verifier(reject={2, 4, 6, 8}, parties=8, seen=seen)
    server.add(call("segment_phrase", protocol, text_prompt="cup"), call("examine_each_mask", protocol),
               call("select_masks_and_return", protocol, mask_ids=[1, 2]),
               call("select_masks_and_return", protocol, mask_ids=[1, 3]))
    settings = AgentSettings(score_threshold=0.2, iom_threshold=1.0)  # keep all 8 instances
    answer = run(engine, server, protocol=protocol, settings=settings)
    assert sorted(seen) == list(range(1, 9)) and answer.verify_calls == 8
    verify = [r for r in server.requests if "with only mask" in all_text(r)]
    assert len(verify) == 8 and all(len(image_urls(r)) == 3 and "tools" not in r for r in verify)
    after_examine, after_retry = server.requests[-2], server.requests[-1]
    assert "Rejected: [2, 4, 6, 8]" in all_text(after_examine)
    assert "ids [2] were rejected by examine_each_mask" in all_text(after_retry)
    assert "Valid ids are [1, 3, 5, 7]" in all_text(after_retry)
    assert answer.status == "answered" and answer.mask_ids == [1, 3]


def test_verification_off_hides_the_tool(engine, server):
    server.add(call("segment_phrase", text_prompt="cup"), call("examine_each_mask"),
               call("select_masks_and_return", mask_ids=[1]))
    answer = run(engine, server, settings=AgentSettings(score_threshold=0.2, verification=False))
    assert "examine_each_mask" not in message_texts(server.requests[0], "system")[0].split("# Tools")[-1]
    assert "Unknown tool 'examine_each_mask'" in all_text(server.requests[2])
    assert answer.mask_ids == [1] and answer.verify_calls == 0


# ----------------------------------------------------------------------------------------- model mistakes


def test_unknown_mask_id_is_retried(engine, server):
    server.add(call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[99]),
               call("select_masks_and_return", mask_ids=[1]))
    answer = run(engine, server)
    assert answer.mask_ids == [1] and answer.steps == 3
    retry = all_text(server.requests[2])
    assert "Unknown mask id(s) [99]. Valid ids are [1]." in retry


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_garbage_replies_are_retried(engine, server, protocol):
    server.add(Reply.text("The cup is on the left, I think."), Reply.text("<tool_call>segment it!</tool_call>"),
               call("segment_phrase", protocol, text_prompt="cup"),
               call("select_masks_and_return", protocol, mask_ids=[1]))
    answer = run(engine, server, protocol=protocol)
    assert answer.status == "answered" and answer.steps == 4
    assert "Your reply did not call a tool" in all_text(server.requests[1])
    assert "Your tool call could not be read" in all_text(server.requests[2])


def test_too_many_invalid_replies_fail_with_a_cause(engine, server):
    server.add("no tool", "still no tool", "nope")
    answer = run(engine, server, settings=AgentSettings(score_threshold=0.2, max_retries=2))
    assert answer.status == "failed" and not answer.ok and len(server.requests) == 3
    assert "3 invalid replies or tool calls in a row" in answer.error
    with pytest.raises(RunFailed) as info:
        answer.raise_for_status()
    assert info.value.cause == "failed"


def test_step_budget_exhausted(engine, server):
    server.add(call("segment_phrase", text_prompt="cup"), call("segment_phrase", text_prompt="woman"))
    answer = run(engine, server, settings=AgentSettings(score_threshold=0.2, max_steps=2))
    assert answer.status == "budget_exhausted" and answer.cause == "max_steps"
    assert len(answer.mask_ids) == 1 and answer.masks.shape == (1, 90, 120)  # the best answer so far
    assert len(server.requests) == 2 and "max_steps=2" in answer.error
    with pytest.raises(RunFailed) as info:
        answer.raise_for_status()
    assert info.value.cause == "budget_exhausted"


# ----------------------------------------------------------------------------------------- pruned context


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_context_is_pruned_after_each_segment(engine, server, protocol):
    server.add(call("segment_phrase", protocol, text_prompt="cup"),
               call("segment_phrase", protocol, text_prompt="woman"),
               Reply.text("hmm"),
               call("segment_phrase", protocol, text_prompt="mug"),
               call("select_masks_and_return", protocol, mask_ids=[1]))
    run(engine, server, protocol=protocol)
    assert [len(image_urls(r)) for r in server.requests] == [1, 2, 2, 2, 2]
    last = server.requests[-1]
    text = all_text(last)
    assert 'Phrases tried so far: "cup", "woman", "mug".' in text
    assert 'segment_phrase("mug")' in text
    assert 'segment_phrase("cup")' not in text and 'segment_phrase("woman")' not in text
    assert "Your reply did not call a tool" not in text  # the retry belonged to an older segment
    roles = [m["role"] for m in last["messages"]]
    assert roles == (["system", "user", "assistant", "tool", "user"] if protocol == "native"
                     else ["system", "user", "assistant", "user"])
    # the retry after "woman" was kept while "woman" was the latest segment
    assert "Your reply did not call a tool" in all_text(server.requests[3])


# ----------------------------------------------------------------------------------------- threads


def test_follow_up_query_on_the_same_thread_sees_earlier_masks(engine, server):
    saver = InMemorySaver()
    server.add(call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[1]))
    first = run(engine, server, checkpointer=saver, thread_id="kitchen")
    assert first.thread_id == "kitchen" and first.mask_ids == [1]
    server.add(call("segment_phrase", text_prompt="woman"), call("select_masks_and_return", mask_ids=[1, 2]))
    second = run(engine, server, query="the cup and the woman", checkpointer=saver, thread_id="kitchen")
    opening = server.requests[2]
    assert len(image_urls(opening)) == 2
    assert 'Masks found for earlier queries on this image are still available' in all_text(opening)
    assert '1 ("cup")' in all_text(opening) and "the cup and the woman" in all_text(opening)
    assert second.mask_ids == [1, 2] and second.phrases == ["cup", "woman"]
    assert second.steps == 2 and second.phrases_tried == ["woman"]
    assert np.array_equal(second.masks[0], first.masks[0])
    other = random_image(np.random.default_rng(99))
    with pytest.raises(UsageError, match="belongs to another image"):
        run(engine, server, checkpointer=saver, thread_id="kitchen", image=other)


def test_checkpoint_holds_no_arrays(engine, server):
    """Masks live in the checkpoint as RLE strings: every value is a plain JSON type."""
    graph = build_graph()
    server.add(call("segment_phrase", text_prompt="cup"), call("select_masks_and_return", mask_ids=[1]))

    async def go():
        image = random_image(np.random.default_rng(AGENT_SEED))
        await run_agent(engine, config(server), image, "the cup", settings=SETTINGS, graph=graph, thread_id="t")
        return (await graph.aget_state({"configurable": {"thread_id": "t"}})).values

    values = asyncio.run(go())
    json.dumps(values)  # raises on arrays, tensors or custom objects
    assert values["masks"][0]["rle"]["size"] == [90, 120] and isinstance(values["masks"][0]["rle"]["counts"], str)
    assert len(json.dumps(values)) < 20_000


# ----------------------------------------------------------------------------------------- looking at answers


def test_answer_save_writes_what_the_cli_writes_and_plot_has_a_legend(engine, server, tmp_path):
    from PIL import Image

    from sam3_core.drawing import color_for_id
    from sam3_core.postprocess import rle_to_mask

    server.add(call("segment_phrase", text_prompt="cup"), call("segment_phrase", text_prompt="woman"),
               call("select_masks_and_return", mask_ids=[1, 2]))
    pixels = random_image(np.random.default_rng(AGENT_SEED))
    path = tmp_path / "scene.png"
    Image.fromarray(pixels).save(path)
    answer = run(engine, server, image=str(path))
    folder = answer.save(tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == ["mask.png", "overlay.png", "result.json", "trace.json"]
    result = json.loads((folder / "result.json").read_text())
    assert result == {"image": str(path), "image_size": {"height": 90, "width": 120},
                      **json.loads(json.dumps(answer.to_json())), "rles": result["rles"]}
    assert len(result["rles"]) == 2
    for rle, mask in zip(result["rles"], answer.masks):  # RLE round trip of the same masks: exact by construction
        assert np.array_equal(rle_to_mask(rle), mask)
    assert json.loads((folder / "trace.json").read_text()) == json.loads(json.dumps(answer.trace_json()))
    assert np.array_equal(np.asarray(Image.open(folder / "mask.png")) > 0, answer.mask)
    picture = answer.plot()
    assert picture.width > 120 and picture.height >= 90  # the overlay with a legend panel to its right
    overlay = np.asarray(picture)[:90, :120]
    assert (overlay[answer.mask] != pixels[answer.mask]).any()  # the masks are tinted
    legend = np.asarray(picture)[:, 120:].reshape(-1, 3)
    for mask_id in (1, 2):  # one swatch per id in the id's palette colour
        assert (legend == np.array(color_for_id(mask_id))).all(axis=1).sum() >= 9
    assert np.array_equal(np.asarray(Image.open(folder / "overlay.png")), np.asarray(picture))
    plain = answer.save(tmp_path / "plain", legend=False)  # the overlay alone, as the CLI writes it
    assert Image.open(plain / "overlay.png").size == (120, 90)
    assert np.array_equal(np.asarray(Image.open(plain / "overlay.png")), overlay)


def test_plot_needs_an_image_when_the_answer_has_none(engine, server):
    server.add(call("report_no_mask"))
    answer = run(engine, server)
    assert answer.plot().width > 120  # a no_mask answer still plots: the image and a legend title
    bare = dataclasses.replace(answer, image=None)
    with pytest.raises(UsageError, match="no image"):
        bare.plot()
    assert bare.plot(image=random_image(np.random.default_rng(AGENT_SEED))).width > 120


# ----------------------------------------------------------------------------------------- a third medium


def test_the_graph_runs_any_medium_and_routes_by_tool_kind(server):
    """A toy medium with its own tools (other names, same kinds) runs on the same compiled graph."""

    @tool
    async def look_for(env: ToolEnv, thing: Annotated[str, Field(description="What to look for.")]) -> ToolOutcome:
        """Look for a thing."""
        return ToolOutcome(text=f"found {thing}", update={"phrases_tried": [*env.state.phrases_tried, thing]},
                           prune=True)

    @tool(kind="verify")
    async def double_check(env: ToolEnv) -> ToolOutcome:
        """Check again."""
        return ToolOutcome(text="checked")

    @tool(kind="answer")
    async def done(env: ToolEnv) -> ToolOutcome:
        """Answer."""
        return ToolOutcome(text="ok", final=True, update={"answer_ids": [], "status": "no_mask"})

    class ToyMedia:
        def key(self, ctx: Any) -> str:
            return "toy:1"

        def tools(self, ctx: Any) -> list:
            return [look_for, double_check, done]

        def opening(self, state: Any, ctx: Any) -> list[dict[str, Any]]:
            return [{"role": "system", "content": "Find things."}, {"role": "user", "content": state.query}]

        def result_parts(self, state: Any, ctx: Any) -> list[dict[str, Any]]:
            return []

        def earlier_text(self, state: Any) -> str:
            return ""

        def before_model_call(self, state: Any, ctx: Any) -> None:
            return None

    @dataclasses.dataclass(frozen=True)
    class ToyContext:
        llm: LLMClient
        settings: AgentSettings
        media: ToyMedia
        cache: dict = dataclasses.field(default_factory=dict)

    server.add(call("look_for", thing="keys"), call("double_check"), call("done"))

    async def go() -> dict[str, Any]:
        async with LLMClient(config(server)) as client:
            graph = build_graph()
            ctx = ToyContext(llm=client, settings=AgentSettings(), media=ToyMedia())
            return await graph.ainvoke(new_query("where are my keys", "toy:1"),
                                       {"configurable": {"thread_id": "toy"}, "recursion_limit": recursion_limit(
                                           ctx.settings)}, context=ctx)

    state = state_from_values(asyncio.run(go()))
    assert state.status == "no_mask" and state.phrases_tried == ["keys"]
    assert [(r["node"], r["tool"]) for r in state.trace if r["node"] != "call_model"] == [
        ("run_tool", "look_for"), ("verify_masks", "double_check"), ("run_tool", "done")]
    assert "found keys" in all_text(server.requests[1])
