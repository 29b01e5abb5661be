"""The Qwen2.5-VL and Qwen3-VL parts of the tiny test checkpoints (:mod:`agent.backends.tiny_llm`).

What is real: the model classes and configs, the families' special tokens (as tokens of their own), the
chat format (``<|im_start|>role ... <|im_end|>``, vision placeholders, ``<tool_call>`` /
``<tool_response>`` markup). What is ours: the weights (random), the vocabulary
(:mod:`agent.backends.tiny_vocab`) and the wording of the template's tool preamble.
"""

from __future__ import annotations

from typing import Any

from agent.backends.tiny_vocab import DEFAULT_VOCAB, train_bpe

QWEN_FAMILIES: tuple[str, ...] = ("qwen2_5_vl", "qwen3_vl")

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
TEMPLATE = (
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


def build_tokenizer(family: str, vocab_size: int = DEFAULT_VOCAB, corpus: list[str] | None = None):
    """A small byte-level BPE tokenizer with the family's special and markup tokens (no download)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=train_bpe(_SPECIAL, vocab_size, corpus), eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", unk_token=None, model_max_length=32768)
    tok.add_tokens(list(_MARKUP[family]), special_tokens=False)
    tok.chat_template = TEMPLATE
    return tok


def _config(family: str, vocab: int, ids: dict[str, int]):  # -> transformers.PretrainedConfig
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


def _processor(family: str, tokenizer: Any):  # -> transformers.ProcessorMixin
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
                                   chat_template=TEMPLATE)
    video = Qwen3VLVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2, **sizes)
    return Qwen3VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                            chat_template=TEMPLATE)


def checkpoint_parts(family: str, tokenizer: Any) -> tuple[Any, Any, list[int], int]:
    """(model config, processor, end token ids, pad id) of a tiny ``family`` model over ``tokenizer``.

    Images become at most 16 merged visual tokens, so a reply takes milliseconds on a CPU.
    """
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL}
    config = _config(family, len(tokenizer), ids)
    return config, _processor(family, tokenizer), [ids["<|im_end|>"]], ids["<|endoftext|>"]
