"""In-process transformers backend (``--llm hf:<model id or folder>``).

The model loads through ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained``, the same
path for a hub id, a local folder and the tiny test checkpoints; prompts are rendered by the model's own
chat template and images go to its own processor (PIL images; it expands each placeholder: Qwen's
``<|image_pad|>``, Llama 4's ``<|image|>`` into its tiles of ``<|patch|>`` tokens). The rendered prompt is
tokenized without adding special tokens (the template wrote them; Llama 4's tokenizer would otherwise put
a second ``<|begin_of_text|>`` first), and pixel values are cast to the model's dtype. Generation stops at
any of the model's end tokens (``generation_config.eos_token_id``: Qwen's ``<|im_end|>``; Llama 4's
``<|eot|>``, ``<|eom|>`` and ``<|end_of_text|>``). Tool calls use the text protocol by default, which is
the same for every family (JSON in ``<tool_call>`` tags, under the call grammar). Weights are bf16 on a
GPU (next to SAM 3), float32 on a CPU.

One worker thread owns the model (:class:`~agent.backends.queued.QueuedBackend`): requests of concurrent
queries are batched into one left-padded ``generate`` call, each row under its own grammar when
constrained. Token counts are
real (prompt tokens without padding, generated tokens up to the end token).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import TYPE_CHECKING, Any

from agent.backends.base import Choice, Completion, Message, TokenCounts
from agent.backends.messages import images_of, to_hf_messages
from agent.backends.queued import QueuedBackend
from sam3_core.errors import CheckpointError, RunFailed
from sam3_core.hub import hub_access

#: What to use instead of the hub, in the error when an in-process LLM cannot be fetched.
LLM_INSTEAD = ("or use a model folder instead (`--llm hf:DIR`; `sam3-agent make-tiny-llm DIR` writes a small "
               "random one for trying the tools), or an OpenAI-compatible server (`--llm http://HOST:PORT/v1`)")

if TYPE_CHECKING:
    from agent.llm import LLMConfig

logger = logging.getLogger(__name__)


class HFBackend(QueuedBackend):
    """A transformers vision-language model in this process; see the module docstring."""

    def __init__(self, target: str, config: LLMConfig) -> None:
        super().__init__(f"hf:{target}", target, config)
        self.model: Any = None
        self.processor: Any = None
        self.compiler: Any = None

    def load(self) -> None:
        """Load the processor and model now (otherwise the first request does)."""
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if self.model is not None:
            return
        device = self.config.local_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        try:
            # One quick hub probe instead of minutes of per-file retries when the hub is unreachable.
            extra = hub_access(self.target, instead=LLM_INSTEAD)
            self.processor = AutoProcessor.from_pretrained(self.target, **extra)
            # straight onto the GPU when accelerate can place it (no full copy in CPU memory first)
            placed = device.startswith("cuda") and importlib.util.find_spec("accelerate") is not None
            model = AutoModelForImageTextToText.from_pretrained(self.target, dtype=dtype, **extra,
                                                                **({"device_map": device} if placed else {}))
        except (OSError, ValueError, CheckpointError) as exc:
            raise RunFailed(f"could not load the in-process model {self.target!r}: {exc}",
                            cause="llm_unavailable") from exc
        self.model = model.to(device).eval()
        self.processor.tokenizer.padding_side = "left"
        if self.config.constrained != "off":
            from agent.backends.constrain import GrammarCompiler

            vocab = self.model.get_output_embeddings().weight.shape[0]
            self.compiler = GrammarCompiler(self.processor.tokenizer, vocab, self.config.grammar_library)
        logger.info("loaded %s on %s (%s)", self.target, device, dtype)

    def _prompt(self, request: dict[str, Any]) -> tuple[str, list[Any]]:
        """The rendered prompt text and its images, by the model's own chat template."""
        messages = to_hf_messages(request["messages"])
        # the same template switches a server takes (e.g. {"enable_thinking": False} for Qwen3)
        switches = dict((request.get("extra_body") or {}).get("chat_template_kwargs") or {})
        text = self.processor.apply_chat_template(messages, tools=request.get("tools"), tokenize=False,
                                                  add_generation_prompt=True, **switches)
        return text, images_of(messages)

    def generate(self, requests: list[dict[str, Any]]) -> list[Completion]:
        """Generate one reply per request in one batch (same temperature); blocking."""
        import torch
        from transformers import LogitsProcessorList

        prompts = [self._prompt(r) for r in requests]
        images = [image for _, imgs in prompts for image in imgs]
        # the template wrote every special token (a tokenizer adding <|begin_of_text|> would double it); pixel
        # values in the model's dtype (Llama 4's image processor returns bf16, Qwen's float32)
        inputs = self.processor(text=[t for t, _ in prompts], images=images or None, padding=True,
                                add_special_tokens=False, return_tensors="pt")
        inputs = inputs.to(device=self.model.device, dtype=self.model.dtype)
        prompt_len = inputs["input_ids"].shape[1]
        max_new = max(int(r.get("max_tokens") or self.config.max_tokens) for r in requests)
        eos_ids = self._eos_ids()
        processors, constrained = LogitsProcessorList(), None
        grammars = [r.get("grammar") for r in requests]
        if self.compiler is not None and any(g is not None for g in grammars):
            from agent.backends.logits import ConstrainedLogits

            matchers = [self.compiler.matcher(g) if g is not None else None for g in grammars]
            budgets = [g.max_prose_tokens if g is not None else None for g in grammars]
            constrained = ConstrainedLogits(self.compiler, matchers, prompt_len, eos_ids, budgets)
            processors.append(constrained)
        temperature = float(requests[0].get("temperature") or 0.0)
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new, logits_processor=processors,
                                      eos_token_id=eos_ids, pad_token_id=self._pad_id(), **sampling)
        logger.debug("generated %d replies in %.3fs", len(requests), time.perf_counter() - started)
        grammar_s = constrained.mask_seconds / len(requests) if constrained else 0.0
        return [self._completion(inputs["attention_mask"][i], out[i, prompt_len:], requests[i], eos_ids, grammar_s)
                for i in range(len(requests))]

    def _completion(self, attention: Any, generated: Any, request: dict[str, Any], eos_ids: list[int],
                    grammar_s: float) -> Completion:
        tokens = generated.tolist()
        limit = int(request.get("max_tokens") or self.config.max_tokens)
        end = next((k for k, t in enumerate(tokens) if t in eos_ids), None)
        kept = tokens[: end + 1] if end is not None else tokens
        finish = "stop" if end is not None and end < limit else "length"
        kept = kept[:limit]
        text = self.processor.tokenizer.decode(kept, skip_special_tokens=True)
        counts = TokenCounts(prompt_tokens=int(attention.sum()), completion_tokens=len(kept))
        return Completion(choices=[Choice(Message(text), finish)], usage=counts, grammar_s=grammar_s)

    def _eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        return ids or [self.processor.tokenizer.eos_token_id]

    def _pad_id(self) -> int:
        pad = self.processor.tokenizer.pad_token_id
        return pad if pad is not None else self._eos_ids()[0]
