"""The Llama 4 part of the tiny test checkpoints (:mod:`agent.backends.tiny_llm`).

What is real: ``Llama4ForConditionalGeneration`` and its configs (a text model with one dense and one
mixture-of-experts layer, one RoPE and one NoPE layer; a vision encoder with pixel shuffle), Llama 4's
special tokens (as tokens of their own), its chat format (``<|begin_of_text|>``, turns as
``<|header_start|>role<|header_end|>`` + two newlines + content + ``<|eot|>``, ``<|image|>`` placeholders
that ``Llama4Processor`` expands into ``<|image_start|> ... <|patch|> ... <|image_end|>`` tiles, tool results
in ``ipython`` turns, calls as ``{"name": ..., "parameters": ...}`` JSON), the tokenizer putting
``<|begin_of_text|>`` first, and the end tokens (``<|end_of_text|>``, ``<|eom|>``, ``<|eot|>``). What is
ours: the weights (random), the vocabulary (:mod:`agent.backends.tiny_vocab`; the ~2000 reserved special
tokens of the real tokenizer are left out), the tile size (56 pixels, 4 tokens a tile) and the wording
of the tool preamble.
"""

from __future__ import annotations

from typing import Any

from agent.backends.tiny_vocab import DEFAULT_VOCAB, train_bpe

# Llama 4's named special tokens (strings as in the real tokenizer; ids are ours).
_SPECIAL = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|header_start|>", "<|header_end|>", "<|eom|>", "<|eot|>", "<|step|>", "<|python_start|>",
    "<|python_end|>", "<|finetune_right_pad|>", "<|image_start|>", "<|image_end|>", "<|tile_x_separator|>",
    "<|tile_y_separator|>", "<|image|>", "<|patch|>", "<|reasoning_thinking_start|>",
    "<|reasoning_thinking_end|>",
)
_END_TOKENS = ("<|end_of_text|>", "<|eom|>", "<|eot|>")
_TILE, _PATCH = 56, 14  # tile side and patch side in pixels: (56 / 14)^2 = 16 patches, 4 tokens after pixel shuffle

# The Llama 4 chat format, written for this project. Content may be a string or a list of parts
# ({"type": "text"|"image"}); tools (native protocol) are described in the system turn; assistant calls
# follow the content between <|python_start|> and <|python_end|>; tool results are ipython turns. No
# incidental whitespace: chat templates render with trim_blocks, so newlines after tags are expressions.
TEMPLATE = (
    "{% macro render(content) %}"
    "{% if content is string %}{{ content }}"
    "{% else %}{% for part in content %}"
    "{% if part.type == 'image' or 'image' in part %}<|image|>"
    "{% elif 'text' in part %}{{ part.text }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endmacro %}"
    "{% macro header(role) %}<|header_start|>{{ role }}<|header_end|>{{ '\\n\\n' }}{% endmacro %}"
    "{{ bos_token }}"
    "{% set first_is_system = messages and messages[0].role == 'system' %}"
    "{% if first_is_system or tools %}{{ header('system') }}"
    "{% if first_is_system %}{{ render(messages[0].content) }}{% endif %}"
    "{% if tools %}{% if first_is_system %}{{ '\\n\\n' }}{% endif %}Environment: ipython\n"
    "You may call these functions, each given as a JSON schema:\n"
    "{% for tool in tools %}{{ tool | tojson }}{{ '\\n' }}{% endfor %}"
    "A call is one JSON object: {\"name\": NAME, \"parameters\": ARGUMENTS}.{% endif %}<|eot|>"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if loop.first and first_is_system %}"
    "{% elif message.role == 'tool' or message.role == 'ipython' %}{{ header('ipython') }}"
    "{{ render(message.content) }}<|eot|>"
    "{% else %}{{ header(message.role) }}{{ render(message.content or '') }}"
    "{% if message.tool_calls %}<|python_start|>"
    "{% for call in message.tool_calls %}"
    "{% set fn = call.function if call.function is defined else call %}"
    "{\"name\": \"{{ fn.name }}\", \"parameters\": "
    "{{ fn.arguments if fn.arguments is string else fn.arguments | tojson }}}"
    "{% endfor %}<|python_end|>{% endif %}<|eot|>"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ header('assistant') }}{% endif %}"
)


def build_tokenizer(vocab_size: int = DEFAULT_VOCAB, corpus: list[str] | None = None):
    """A small byte-level BPE tokenizer with Llama 4's special tokens; it puts ``<|begin_of_text|>`` first."""
    from transformers import PreTrainedTokenizerFast

    core = train_bpe(_SPECIAL, vocab_size, corpus, bos="<|begin_of_text|>")
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|begin_of_text|>", eos_token="<|eot|>",
                                  pad_token="<|finetune_right_pad|>", unk_token=None, model_max_length=32768)
    tok.chat_template = TEMPLATE
    return tok


def _config(vocab: int, ids: dict[str, int]):  # -> transformers.Llama4Config
    from transformers import Llama4Config

    text = {"vocab_size": vocab, "hidden_size": 64, "intermediate_size": 64, "intermediate_size_mlp": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            # layer 0: dense MLP with RoPE (chunked attention); layer 1: 2 experts + shared one, no RoPE
            "num_local_experts": 2, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2,
            "no_rope_layer_interval": 2, "max_position_embeddings": 65536,
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
            "bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": [ids[t] for t in _END_TOKENS],
            "pad_token_id": ids["<|finetune_right_pad|>"]}
    # pixel shuffle (ratio 0.5) turns 32 channels into 128 = intermediate_size, the adapter's input
    vision = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
              "image_size": _TILE, "patch_size": _PATCH, "pixel_shuffle_ratio": 0.5, "vision_output_dim": 64,
              "projector_input_dim": 64, "projector_output_dim": 64,
              "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
    return Llama4Config(text_config=text, vision_config=vision, boi_token_index=ids["<|image_start|>"],
                        eoi_token_index=ids["<|image_end|>"], image_token_index=ids["<|patch|>"])


def checkpoint_parts(tokenizer: Any) -> tuple[Any, Any, list[int], int]:
    """(model config, processor, end token ids, pad id) of a tiny Llama 4 over ``tokenizer``.

    An image becomes at most 4 tiles plus the global view, 4 tokens each, so a reply takes milliseconds
    on a CPU.
    """
    from transformers import Llama4ImageProcessor, Llama4Processor

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL}
    image = Llama4ImageProcessor(size={"height": _TILE, "width": _TILE}, max_patches=4)
    processor = Llama4Processor(image_processor=image, tokenizer=tokenizer, patch_size=_PATCH,
                                pixel_shuffle_ratio=0.5, chat_template=TEMPLATE)
    return _config(len(tokenizer), ids), processor, [ids[t] for t in _END_TOKENS], ids["<|finetune_right_pad|>"]
