"""Tiny randomly initialised Qwen2.5-VL / Qwen3-VL checkpoints for tests and benchmarks, built offline.

:func:`write_tiny_llm` writes a folder laid out like a real hub checkpoint (``config.json``, weights,
``tokenizer.json``, ``tokenizer_config.json`` with a chat template, ``preprocessor_config.json``...), so
it loads through exactly the ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained`` path a
real model takes. What is real: the model classes and their configs, the family's special tokens (as
tokens of their own), the chat format (``<|im_start|>role ... <|im_end|>``, vision placeholders,
``<tool_call>`` / ``<tool_response>`` markup). What is not: the weights (random), the vocabulary (a small
byte-level BPE trained here on the project's own prompt text, so there is no download) and the wording of
the template's tool preamble (ours).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from sam3_core.errors import UsageError

logger = logging.getLogger(__name__)

Family = Literal["qwen2_5_vl", "qwen3_vl"]
FAMILIES: tuple[str, ...] = ("qwen2_5_vl", "qwen3_vl")

# Special tokens of the Qwen VL families (strings as in the real tokenizers; ids are ours).
_SPECIAL = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
# Markup tokens that are single tokens but not "special" (they stay in decoded text).
_MARKUP = {
    "qwen2_5_vl": ("<tool_call>", "</tool_call>"),
    "qwen3_vl": ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"),
}

# The chat format of the Qwen VL families, written for this project. Content may be a string or a list
# of parts ({"type": "text"|"image"|"video"}); assistant tool calls are rendered in <tool_call> tags and
# tool results go in a user turn inside <tool_response> tags. The string has no incidental whitespace;
# a newline right after a block tag is written as an expression because chat templates render with trim_blocks.
_TEMPLATE = (
    "{% macro render(content) %}"
    "{% if content is string %}{{ content }}"
    "{% else %}{% for part in content %}"
    "{% if part.type == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part.type == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part.text }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endmacro %}"
    "{% set first_is_system = messages and messages[0].role == 'system' %}"
    "{% if first_is_system or tools %}<|im_start|>system\n"
    "{% if first_is_system %}{{ render(messages[0].content) }}{% endif %}"
    "{% if tools %}{{ '\\n' }}\n# Tools\n\nThese functions are available, described as JSON schemas:\n<tools>"
    "{% for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{% endfor %}{{ '\\n' }}</tools>\n\n"
    "Call one by writing <tool_call>\n{\"name\": NAME, \"arguments\": ARGUMENTS}\n</tool_call>"
    "{% endif %}<|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "{% if loop.first and first_is_system %}"
    "{% elif message.role == 'tool' %}"
    "{% if loop.first or loop.previtem.role != 'tool' %}<|im_start|>user{% endif %}"
    "{{ '\\n' }}<tool_response>\n{{ render(message.content) }}\n</tool_response>"
    "{% if loop.last or loop.nextitem.role != 'tool' %}<|im_end|>\n{% endif %}"
    "{% else %}<|im_start|>{{ message.role }}\n{{ render(message.content or '') }}"
    "{% for call in message.tool_calls or [] %}"
    "{% set fn = call.function if call.function is defined else call %}"
    "{% if loop.first and message.content %}{{ '\\n' }}{% endif %}"
    "<tool_call>\n{\"name\": \"{{ fn.name }}\", \"arguments\": "
    "{{ fn.arguments if fn.arguments is string else fn.arguments | tojson }}}\n</tool_call>"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    """Text to learn the tiny vocabulary from: the project's prompts plus JSON and tool-call shapes."""
    folder = Path(__file__).resolve().parents[2] / "prompts"
    texts = [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.md"))]
    texts.append('{"name": "segment_phrase", "arguments": {"text_prompt": "red car"}}')
    texts.append('{"name": "select_masks_and_return", "arguments": {"mask_ids": [1, 2, 3]}}')
    texts.append('{"name": "report_no_mask", "arguments": {}} 0123456789 yes no')
    return texts


def build_tokenizer(family: Family, vocab_size: int = 800, corpus: list[str] | None = None):
    """A small byte-level BPE tokenizer with the family's special and markup tokens (no download).

    ``corpus`` (default: the project's prompts) is the text the merges are learned from; a larger one
    gives a larger vocabulary, up to ``vocab_size`` (benchmarks use that for realistic grammar costs).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(_SPECIAL),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(corpus or _corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  unk_token=None, model_max_length=32768)
    tok.add_tokens(list(_MARKUP[family]), special_tokens=False)
    tok.chat_template = _TEMPLATE
    return tok


def _configs(family: Family, vocab: int, ids: dict[str, int]):  # -> transformers.PretrainedConfig
    from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

    text = {"vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"]}
    tokens = {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
              "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"]}
    if family == "qwen2_5_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                  "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                  "fullatt_block_indexes": [1]}
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens)
    text["head_dim"] = 16
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 5e6, "mrope_section": [2, 3, 3],
                               "mrope_interleaved": True}
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
              "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
              "num_position_embeddings": 64, "deepstack_visual_indexes": [1]}
    return Qwen3VLConfig(text_config=text, vision_config=vision, **tokens)


def _processor(family: Family, tokenizer):  # -> transformers.ProcessorMixin
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    patch = 14 if family == "qwen2_5_vl" else 16
    unit = patch * 2  # one merged token covers (patch * merge)^2 pixels
    sizes = {"size": {"shortest_edge": 4 * unit * unit, "longest_edge": 16 * unit * unit}}
    image = Qwen2VLImageProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2, **sizes)
    if family == "qwen2_5_vl":
        video = Qwen2VLVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2, **sizes)
        return Qwen2_5_VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                                   chat_template=_TEMPLATE)
    video = Qwen3VLVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2, **sizes)
    return Qwen3VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                            chat_template=_TEMPLATE)


def write_tiny_llm(folder: str | Path, family: str = "qwen2_5_vl", *, seed: int = 0) -> Path:
    """Write a tiny random ``family`` checkpoint (model, tokenizer, processor) to ``folder``; returns it.

    Images become at most 16 merged visual tokens, so a reply takes milliseconds on a CPU.
    """
    if family not in FAMILIES:
        raise UsageError(f"family must be one of {FAMILIES}, got {family!r}")
    import torch
    from transformers import AutoModelForImageTextToText

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(family)  # type: ignore[arg-type]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL}
    config = _configs(family, len(tokenizer), ids)  # type: ignore[arg-type]
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder)
    _processor(family, tokenizer).save_pretrained(folder)  # type: ignore[arg-type]
    (folder / "TINY_RANDOM_MODEL.json").write_text(json.dumps({"family": family, "seed": seed}) + "\n")
    logger.info("wrote a tiny random %s checkpoint to %s", family, folder)
    return folder
