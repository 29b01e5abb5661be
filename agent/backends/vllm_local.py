"""In-process vLLM backend (``--llm vllm:<model>``), for one GPU shared with SAM 3.

vLLM is an optional extra (``pip install 'sam3-agent[vllm]'``, which pins the version this module was
checked against: 0.33.0); without it this backend refuses to start with a message saying so. vLLM takes
``LLMConfig.vllm_gpu_memory_fraction`` of the GPU's *total* memory for its weights, activations and KV
cache (default 0.45, leaving the rest to SAM 3 and PyTorch's allocator); at start-up that much must still
be free, or vLLM refuses. The conversations go to ``LLM.chat`` in the OpenAI format (images as ``data:``
URLs, which vLLM decodes itself), all queued requests at once (vLLM batches them), with the same chat
template switches a server takes (``extra_body["chat_template_kwargs"]``); a constrained call uses
vLLM's own structured outputs (``StructuredOutputsParams(grammar=...)``) with the same xgrammar EBNF
text that is sent to a vLLM server.

The calls used, as in vLLM 0.33.0's source: ``vllm.LLM(model, gpu_memory_utilization=..., max_num_seqs=...,
limit_mm_per_prompt={"image": n})`` (the last two go to ``EngineArgs``); ``LLM.chat(conversations,
sampling_params_per_conversation, use_tqdm=..., chat_template_kwargs=...)`` returning ``RequestOutput``
objects (``prompt_token_ids``, ``outputs[0].text / .token_ids / .finish_reason``);
``vllm.sampling_params.SamplingParams(temperature=..., max_tokens=..., structured_outputs=...)``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from typing import TYPE_CHECKING, Any

from agent.backends.base import Choice, Completion, Message, TokenCounts
from agent.backends.queued import QueuedBackend
from sam3_core.errors import UsageError

if TYPE_CHECKING:
    from agent.llm import LLMConfig, Usage

logger = logging.getLogger(__name__)

MISSING = ("--llm vllm:<model> needs vLLM in this environment, which is not installed. Install the extra "
           "(pip install 'sam3-agent[vllm]', on a machine with a CUDA GPU), or use --llm hf:<model> "
           "(in-process transformers) or the URL of a vLLM server.")

#: Most images one conversation may carry (vLLM's ``limit_mm_per_prompt``; it reserves memory for them).
#: The agent sends at most 3 per image query (raw image, overlay; raw, mask and crop when verifying) and
#: 2 x ``VideoSettings.keyframes`` per video query with ``keyframe_sheet=False`` (8 by default).
MAX_IMAGES_PER_PROMPT = 8


def available() -> bool:
    """Whether vLLM can be imported here."""
    return importlib.util.find_spec("vllm") is not None


def _image_count(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if isinstance(m.get("content"), list)
               for p in m["content"] if isinstance(p, dict) and p.get("type") == "image_url")


class VLLMBackend(QueuedBackend):
    """vLLM's offline ``LLM`` engine in this process; see the module docstring."""

    def __init__(self, target: str, config: LLMConfig) -> None:
        if not available():
            raise UsageError(MISSING)
        super().__init__(f"vllm:{target}", target, config)
        self.engine: Any = None

    def load(self) -> None:
        """Start the vLLM engine with the configured share of GPU memory."""
        from vllm import LLM

        if self.engine is None:
            self.engine = LLM(model=self.target, gpu_memory_utilization=self.config.vllm_gpu_memory_fraction,
                              max_num_seqs=self.config.local_max_batch,
                              limit_mm_per_prompt={"image": MAX_IMAGES_PER_PROMPT})

    async def complete(self, request: dict[str, Any], usage: Usage) -> Completion:
        """Queue ``request`` (refused first when it has more images than the engine was started for)."""
        images = _image_count(request["messages"])
        if images > MAX_IMAGES_PER_PROMPT:
            raise UsageError(f"a conversation has {images} images; in-process vLLM is started for at most "
                             f"{MAX_IMAGES_PER_PROMPT} (show fewer keyframes, or one contact sheet)")
        return await super().complete(request, usage)

    def _params(self, request: dict[str, Any]) -> Any:
        try:
            from vllm.sampling_params import SamplingParams, StructuredOutputsParams
        except ImportError as exc:  # vLLM before 0.10.2 named these differently
            raise UsageError(f"--llm vllm: needs vLLM >= 0.10.2 (the [vllm] extra installs 0.33.0): {exc}") from exc
        kwargs: dict[str, Any] = {"temperature": float(request.get("temperature") or 0.0),
                                  "max_tokens": int(request.get("max_tokens") or self.config.max_tokens)}
        grammar = request.get("grammar")
        if grammar is not None:
            kwargs["structured_outputs"] = StructuredOutputsParams(grammar=grammar.ebnf())
        return SamplingParams(**kwargs)

    def generate(self, requests: list[dict[str, Any]]) -> list[Completion]:
        """The ``requests`` in as few ``LLM.chat`` calls as their tools and template switches allow (one, in
        the agent: every request of a client has the same)."""
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            key = json.dumps([request.get("tools"), _switches(request)], sort_keys=True, default=str)
            groups.setdefault(key, []).append(index)
        completions: list[Completion | None] = [None] * len(requests)
        for indices in groups.values():
            first = requests[indices[0]]
            outputs = self.engine.chat([requests[i]["messages"] for i in indices],
                                       [self._params(requests[i]) for i in indices],
                                       use_tqdm=False, tools=first.get("tools"),
                                       chat_template_kwargs=_switches(first) or None)
            for index, out in zip(indices, outputs):
                completions[index] = _completion(out)
        return [c for c in completions if c is not None]


def _switches(request: dict[str, Any]) -> dict[str, Any]:
    """The chat template switches of ``request`` (e.g. ``{"enable_thinking": False}`` for Qwen3)."""
    return dict((request.get("extra_body") or {}).get("chat_template_kwargs") or {})


def _completion(out: Any) -> Completion:
    """A :class:`Completion` from one vLLM ``RequestOutput``."""
    first = out.outputs[0]
    counts = TokenCounts(prompt_tokens=len(out.prompt_token_ids or []), completion_tokens=len(first.token_ids))
    return Completion([Choice(Message(first.text), first.finish_reason or "stop")], counts)
