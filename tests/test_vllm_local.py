"""In-process vLLM (``--llm vllm:<model>``) against a FAKE ``vllm`` module, since vLLM cannot run here.

The fake is not vLLM: it is built to the signatures read in vLLM 0.33.0's own source (the sdist of the
version the ``[vllm]`` extra pins), strict where the real ones are, so that a misspelt or missing argument
of ours fails here:

* ``vllm/entrypoints/llm.py``: ``LLM.__init__(model, *, ..., gpu_memory_utilization=0.92, ..., **kwargs)``,
  the kwargs going to ``EngineArgs`` (``vllm/engine/arg_utils.py``: ``max_num_seqs: int | None``,
  ``limit_mm_per_prompt: dict[str, int | dict]``); ``LLM.chat(messages, sampling_params=None,
  use_tqdm=True, lora_request=None, priority=None, chat_template=None, chat_template_content_format="auto",
  add_generation_prompt=True, continue_final_message=False, tools=None, chat_template_kwargs=None,
  tokenization_kwargs=None, mm_processor_kwargs=None) -> list[RequestOutput]``, one output per
  conversation, in order; a list of sampling params must be as long as the conversations.
* ``vllm/sampling_params.py``: ``StructuredOutputsParams(json, regex, choice, grammar, json_object,
  disable_any_whitespace, disable_additional_properties, whitespace_pattern, structural_tag)`` with exactly
  one constraint; ``SamplingParams`` keyword fields (``temperature``, ``max_tokens``,
  ``structured_outputs`` ...). There is no ``GuidedDecodingParams`` any more.
* ``vllm/v1/structured_output/backend_xgrammar.py``: a non-Lark grammar is checked with
  ``xgrammar.Grammar.from_ebnf`` (done here too, with the real xgrammar).
* ``vllm/outputs.py``: ``RequestOutput.prompt_token_ids``, ``.outputs[i]`` with ``text``, ``token_ids``,
  ``finish_reason``.
* ``vllm/__init__.py`` exposes ``LLM`` and ``SamplingParams`` lazily and raises AttributeError for other
  names, so ``vllm.sampling_params`` is not an attribute until that module is imported (the fake has none).
* ``vllm/multimodal/media/connector.py``: images may be ``data:`` URLs (checked in ``image_url`` parts).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.machinery
import sys
import types
from typing import Any, ClassVar

import numpy as np
import pytest
import xgrammar as xgr

from agent import tool_protocol as tp
from agent.backends import vllm_local
from agent.backends.vllm_local import MAX_IMAGES_PER_PROMPT, VLLMBackend
from agent.image_urls import image_part
from agent.llm import LLMClient, LLMConfig
from sam3_core.errors import UsageError
from tools.registry import specs
from tools.segmentation import ALL_TOOLS

SPECS = specs(ALL_TOOLS)
IDS = tp.CallChoices(values={"mask_ids": (2, 5)})
IMAGE = image_part(np.zeros((32, 48, 3), dtype=np.uint8), None)
CALL = '<tool_call>{"name": "select_masks_and_return", "arguments": {"mask_ids": [5]}}</tool_call>'


@dataclasses.dataclass
class StructuredOutputsParams:
    """vLLM 0.33's fields; exactly one constraint."""

    json: str | dict | None = None
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None
    disable_any_whitespace: bool = False
    disable_additional_properties: bool = False
    whitespace_pattern: str | None = None
    structural_tag: str | None = None

    def __post_init__(self) -> None:
        given = [self.json, self.regex, self.choice, self.grammar, self.json_object, self.structural_tag]
        if sum(v is not None for v in given) != 1:
            raise ValueError("exactly one kind of structured outputs constraint")


@dataclasses.dataclass(kw_only=True)
class SamplingParams:
    """The subset of vLLM 0.33's keyword fields a caller like ours could use; others are a TypeError."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    max_tokens: int | None = 16
    skip_special_tokens: bool = True
    structured_outputs: StructuredOutputsParams | None = None


@dataclasses.dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None


@dataclasses.dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool = True


class LLM:
    """Records how it was started and called; replies with ``reply`` to every conversation."""

    instances: ClassVar[list[LLM]] = []  # reset by the fake_vllm fixture
    reply = CALL

    def __init__(self, model: str, *, gpu_memory_utilization: float = 0.92, max_num_seqs: int | None = None,
                 limit_mm_per_prompt: dict[str, int] | None = None) -> None:
        self.model, self.calls = model, []
        self.started = {"gpu_memory_utilization": gpu_memory_utilization, "max_num_seqs": max_num_seqs,
                        "limit_mm_per_prompt": limit_mm_per_prompt}
        LLM.instances.append(self)

    def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None, priority=None,
             chat_template=None, chat_template_content_format="auto", add_generation_prompt=True,
             continue_final_message=False, tools=None, chat_template_kwargs=None, tokenization_kwargs=None,
             mm_processor_kwargs=None) -> list[RequestOutput]:
        conversations = messages if messages and isinstance(messages[0], list) else [messages]
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(conversations)
        assert len(params) == len(conversations), "one SamplingParams per conversation"
        limit = self.started["limit_mm_per_prompt"]["image"]
        for conversation, param in zip(conversations, params):
            assert isinstance(param, SamplingParams)
            images = [p["image_url"]["url"] for m in conversation if isinstance(m["content"], list)
                      for p in m["content"] if p["type"] == "image_url"]
            assert len(images) <= limit and all(u.startswith("data:image/") for u in images)
            if param.structured_outputs is not None:
                xgr.Grammar.from_ebnf(param.structured_outputs.grammar)  # what vLLM 0.33 validates with
        self.calls.append({"conversations": conversations, "params": params, "use_tqdm": use_tqdm,
                           "tools": tools, "chat_template_kwargs": chat_template_kwargs})
        tokens = list(range(len(self.reply) // 4))
        return [RequestOutput(str(i), None, list(range(40 + i)), None, [CompletionOutput(0, self.reply, tokens,
                                                                                         finish_reason="stop")])
                for i in range(len(conversations))]


@pytest.fixture
def fake_vllm(monkeypatch) -> type[LLM]:
    """The fake ``vllm`` and ``vllm.sampling_params`` modules in ``sys.modules``."""
    package = types.ModuleType("vllm")
    package.__spec__ = importlib.machinery.ModuleSpec("vllm", None, is_package=True)
    package.__path__ = []
    package.LLM, package.SamplingParams = LLM, SamplingParams
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.SamplingParams, sampling.StructuredOutputsParams = SamplingParams, StructuredOutputsParams
    monkeypatch.setitem(sys.modules, "vllm", package)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    LLM.instances = []
    return LLM


def _messages(images: int = 1) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You segment images."},
            {"role": "user", "content": [{"type": "text", "text": "the cup"}, *[IMAGE] * images]}]


def test_engine_start_and_constrained_call_use_the_verified_api(fake_vllm):
    config = LLMConfig(base_url="vllm:org/model-8b", vllm_gpu_memory_fraction=0.3, local_max_batch=4,
                       temperature=0.5, max_tokens=300,
                       extra_body={"chat_template_kwargs": {"enable_thinking": False}})

    async def main():
        async with LLMClient(config) as llm:
            return await llm.chat(_messages(), SPECS, choices=IDS), await llm.model_name()

    assert vllm_local.available()
    reply, name = asyncio.run(main())
    assert name == "org/model-8b" and reply.tool_call.name == "select_masks_and_return" and reply.tool_error is None
    assert reply.usage.prompt_tokens == 40 and reply.usage.completion_tokens == len(CALL) // 4
    [engine] = fake_vllm.instances
    assert engine.model == "org/model-8b"
    assert engine.started == {"gpu_memory_utilization": 0.3, "max_num_seqs": 4,
                              "limit_mm_per_prompt": {"image": MAX_IMAGES_PER_PROMPT}}
    [call] = engine.calls
    assert call["use_tqdm"] is False and call["tools"] is None  # text protocol: tools are in the system prompt
    assert call["chat_template_kwargs"] == {"enable_thinking": False}
    [params] = call["params"]
    assert params.temperature == 0.5 and params.max_tokens == 300
    grammar = params.structured_outputs.grammar
    assert "<tool_call>" in grammar and "select_masks_and_return" in grammar and "report_no_mask" in grammar
    assert call["conversations"][0][1]["content"][1]["type"] == "image_url"  # the OpenAI form, as a server takes


def test_requests_batch_into_one_chat_call_per_template_switches(fake_vllm):
    backend = VLLMBackend("org/m", LLMConfig(base_url="vllm:org/m", constrained="off"))
    backend.load()
    plain = {"messages": _messages(), "temperature": 0.0, "max_tokens": 20, "grammar": None}
    thinking = {**plain, "extra_body": {"chat_template_kwargs": {"enable_thinking": True}}}
    completions = backend.generate([plain, thinking, plain])
    assert [c.choices[0].message.content for c in completions] == [CALL] * 3
    first, second = backend.engine.calls
    assert len(first["conversations"]) == 2 and first["chat_template_kwargs"] is None
    assert len(second["conversations"]) == 1 and second["chat_template_kwargs"] == {"enable_thinking": True}
    assert all(p.structured_outputs is None for call in backend.engine.calls for p in call["params"])
    assert [c.usage.prompt_tokens for c in completions] == [40, 40, 41]  # outputs back in request order


def test_a_conversation_with_too_many_images_is_refused_clearly(fake_vllm):
    async def main():
        async with LLMClient(LLMConfig(base_url="vllm:org/m", max_retries=0)) as llm:
            await llm.chat(_messages(MAX_IMAGES_PER_PROMPT + 1), SPECS, choices=IDS)

    with pytest.raises(UsageError, match=f"at most {MAX_IMAGES_PER_PROMPT}"):
        asyncio.run(main())
    assert not fake_vllm.instances  # refused before the engine started
