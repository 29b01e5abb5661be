"""In-process vLLM backend (``--llm vllm:<model>``), for one GPU shared with SAM 3.

vLLM is an optional extra (``pip install 'sam3-agent[vllm]'``); without it this backend refuses to start
with a message saying so. vLLM takes ``LLMConfig.vllm_gpu_memory_fraction`` of the GPU's memory for its
weights and KV cache (default 0.45, leaving the rest to SAM 3 and PyTorch's allocator); the
conversation goes to ``LLM.chat`` in the OpenAI format (images as data URLs), all queued requests at
once (vLLM batches them itself), and a constrained call uses vLLM's own structured outputs with the
same grammar text that is sent to a vLLM server.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, Any

from agent.backends.base import Choice, Completion, Message, TokenCounts
from agent.backends.queued import QueuedBackend
from sam3_core.errors import UsageError

if TYPE_CHECKING:
    from agent.llm import LLMConfig

logger = logging.getLogger(__name__)

MISSING = ("--llm vllm:<model> needs vLLM in this environment, which is not installed. Install the extra "
           "(pip install 'sam3-agent[vllm]', on a machine with a CUDA GPU), or use --llm hf:<model> "
           "(in-process transformers) or the URL of a vLLM server.")


def available() -> bool:
    """Whether vLLM can be imported here."""
    return importlib.util.find_spec("vllm") is not None


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
                              max_num_seqs=self.config.local_max_batch, limit_mm_per_prompt={"image": 4})

    def _params(self, request: dict[str, Any]) -> Any:
        import vllm

        kwargs: dict[str, Any] = {"temperature": float(request.get("temperature") or 0.0),
                                  "max_tokens": int(request.get("max_tokens") or self.config.max_tokens)}
        grammar = request.get("grammar")
        if grammar is not None:
            ebnf = grammar.ebnf()
            if hasattr(vllm.sampling_params, "StructuredOutputsParams"):
                kwargs["structured_outputs"] = vllm.sampling_params.StructuredOutputsParams(grammar=ebnf)
            else:  # vLLM before 0.12
                kwargs["guided_decoding"] = vllm.sampling_params.GuidedDecodingParams(grammar=ebnf)
        return vllm.SamplingParams(**kwargs)

    def generate(self, requests: list[dict[str, Any]]) -> list[Completion]:
        """All ``requests`` in one ``LLM.chat`` call."""
        outputs = self.engine.chat([r["messages"] for r in requests], [self._params(r) for r in requests],
                                   tools=requests[0].get("tools"), use_tqdm=False)
        completions = []
        for out in outputs:
            first = out.outputs[0]
            counts = TokenCounts(prompt_tokens=len(out.prompt_token_ids or []), completion_tokens=len(first.token_ids))
            completions.append(Completion([Choice(Message(first.text), first.finish_reason or "stop")], counts))
        return completions
