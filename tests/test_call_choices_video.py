"""Constrained calls of the video agent: frame indices within the clip, masklet ids among the candidates.

The grammar is checked with each grammar library's own matcher on the token strings of whole replies,
and in the EBNF text that goes to a vLLM server.
"""

from __future__ import annotations

import pytest

from agent import tool_protocol as tp
from agent.backends.constrain import GrammarCompiler
from agent.backends.grammar import LIBRARIES, CallGrammar, _within, call_schema
from agent.backends.tiny_llm import build_tokenizer
from agent.call_choices import call_choices
from agent.settings import VIDEO_AGENT_DEFAULTS
from agent.state import State
from tools.registry import specs
from tools.video_tools import VIDEO_TOOLS

SPECS = specs(VIDEO_TOOLS)
#: Masklets 1 and 3 are candidates, 2 was rejected.
STATE = State(masks=[{"id": 1, "status": "candidate"}, {"id": 2, "status": "rejected"},
                     {"id": 3, "status": "candidate"}], phrases_tried=["dog"])
FRAMES = 5


def refine(masklet_id: object, frame: object) -> str:
    arguments = f'"masklet_id": {masklet_id}, "frame_index": {frame}, "points": [[10.5, 20]], "point_labels": [1]'
    return '<tool_call>{"name": "refine_masklet", "arguments": {' + arguments + "}}</tool_call>"


def select(ids: str) -> str:
    return '<tool_call>{"name": "select_masklets_and_return", "arguments": {"masklet_ids": [' + ids + "]}}</tool_call>"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("qwen2_5_vl")


@pytest.fixture(scope="module", params=LIBRARIES)
def compiler(request, tokenizer) -> GrammarCompiler:
    return GrammarCompiler(tokenizer, len(tokenizer), request.param)


def accepts(compiler: GrammarCompiler, tokenizer, grammar: CallGrammar, text: str) -> bool:
    """Whether ``text`` followed by the end token is a complete reply under ``grammar``."""
    matcher = compiler.matcher(grammar)
    tokens = [*tokenizer.encode(text), tokenizer.convert_tokens_to_ids("<|im_end|>")]
    return all(matcher.accept(t) for t in tokens) and matcher.done()


def test_video_choices_bound_frames_and_ids():
    choices = call_choices(STATE, VIDEO_AGENT_DEFAULTS, SPECS, num_frames=FRAMES)
    assert choices.ranges == {"frame_index": (0, FRAMES - 1)} and choices.values["masklet_id"] == (1, 3)
    assert call_choices(STATE, VIDEO_AGENT_DEFAULTS, SPECS).ranges == {}  # an image run: no frames
    by_name = {o["properties"]["name"]["const"]: o["properties"]["arguments"]
               for o in call_schema(SPECS, choices)["anyOf"]}
    frame = by_name["refine_masklet"]["properties"]["frame_index"]
    assert (frame["minimum"], frame["maximum"]) == (0, FRAMES - 1)
    assert by_name["refine_masklet"]["properties"]["masklet_id"]["enum"] == [1, 3]


@pytest.mark.parametrize(("text", "ok"), [
    (refine(3, 4), True),
    (refine(1, 0), True),
    (refine(3, 5), False),   # one past the last frame
    (refine(3, -1), False),
    (refine(3, 40), False),
    (refine(3, "04"), False),
    (refine(2, 4), False),   # a rejected masklet
    (refine(7, 1), False),   # no such masklet
    (select("3, 1"), True),
    (select("2"), False),
])
def test_grammar_keeps_frames_in_the_clip(compiler, tokenizer, text, ok):
    grammar = CallGrammar(call_schema(SPECS, call_choices(STATE, VIDEO_AGENT_DEFAULTS, SPECS, num_frames=FRAMES)))
    assert accepts(compiler, tokenizer, grammar, text) is ok


def test_one_frame_clip_and_the_server_grammar(compiler, tokenizer):
    one = CallGrammar(call_schema(SPECS, call_choices(STATE, VIDEO_AGENT_DEFAULTS, SPECS, num_frames=1)))
    assert accepts(compiler, tokenizer, one, refine(1, 0)) and not accepts(compiler, tokenizer, one, refine(1, 1))
    ebnf = CallGrammar(call_schema(SPECS, call_choices(STATE, VIDEO_AGENT_DEFAULTS, SPECS, num_frames=FRAMES))).ebnf()
    assert '("0") | ([1-4])' in ebnf  # the vLLM server's grammar bounds the frame index too


def test_ranges_intersect_and_can_rule_a_tool_out():
    array = {"type": "array", "items": {"type": "integer", "minimum": 2}, "minItems": 1}
    assert _within(array, 0, 9)["items"] == {"type": "integer", "minimum": 2, "maximum": 9}
    assert _within({"type": "integer", "enum": [1, 3, 8]}, 0, 4) == {"type": "integer", "enum": [1, 3]}
    empty = call_schema(SPECS, tp.CallChoices(values={"masklet_id": (1,), "masklet_ids": (1,)},
                                              ranges={"frame_index": (0, -1)}))  # a clip without frames
    assert "refine_masklet" not in {o["properties"]["name"]["const"] for o in empty["anyOf"]}


def test_a_video_run_sends_its_frame_range_to_the_server(video_checkpoint, scripted_llm):
    """The graph passes the clip's frame count: the vLLM grammar of a 6-frame run allows frames 0-5 only."""
    import json

    from video_fixtures import moving_shapes

    from agent.llm import LLMConfig
    from agent.settings import VideoAgentSettings
    from agent.testing import Reply
    from agent.video_agent import run_video_agent_sync
    from sam3_core.video import VideoEngine, VideoOptions

    def call(name: str, **arguments: object) -> Reply:
        return Reply.text(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>")

    scripted_llm.add(call("segment_phrase", text_prompt="disc"), call("report_no_mask"))
    config = LLMConfig(base_url=scripted_llm.base_url, model=scripted_llm.model, api_key="test", max_retries=0,
                       tool_protocol="text", constrained="on")
    options = VideoOptions(max_sessions=2, score_threshold=0.05, new_object_threshold=0.1, hotstart_delay=2)
    with VideoEngine.from_pretrained(video_checkpoint, device="cpu", options=options) as engine:
        answer = run_video_agent_sync(engine, config, moving_shapes(6, height=84, width=112), "the disc",
                                      settings=VideoAgentSettings())
    assert answer.status == "no_mask"
    grammars = [body["structured_outputs"]["grammar"] for body in scripted_llm.requests]
    assert len(grammars) == 2 and "refine_masklet" not in grammars[0]  # no masklet to refine yet
    assert answer.phrases_tried == ["disc"] and "refine_masklet" in grammars[1], grammars[1][:300]
    assert '("0") | ([1-5])' in grammars[1]
