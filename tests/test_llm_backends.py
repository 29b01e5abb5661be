"""In-process backends: the tiny checkpoints load like real ones; replies, usage, batching; vLLM absent."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_bench
from PIL import Image
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from agent.backends import vllm_local
from agent.backends.hf_local import HFBackend
from agent.backends.messages import decode_data_url, to_hf_messages
from agent.backends.spec import DEFAULT_LOCAL_SPEC
from agent.backends.tiny_llm import FAMILIES, write_tiny_llm
from agent.image_urls import image_part
from agent.llm import LLMClient, LLMConfig
from cli.main import main as cli_main
from cli.options import add_llm_options, llm_config
from sam3_core.errors import UsageError

IMAGE = np.random.default_rng(7).integers(0, 255, (90, 120, 3), dtype=np.uint8)
MESSAGES = [{"role": "system", "content": "You describe images."},
            {"role": "user", "content": [{"type": "text", "text": "what is this?"}, image_part(IMAGE, None)]}]

pytest_plugins = ["llm_fixtures"]  # tiny_llm (every family), one_torch_thread
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Per family: tokens that must be single tokens, how the rendered prompt starts, the image placeholder
# the template writes, and how the prompt ends (the assistant's turn opened).
FORMATS = {
    "qwen2_5_vl": (("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<tool_call>"),
                   "<|im_start|>system\nYou describe images.<|im_end|>\n<|im_start|>user\n",
                   "<|vision_start|><|image_pad|><|vision_end|>", "<|im_start|>assistant\n"),
    "llama4": (("<|begin_of_text|>", "<|header_start|>", "<|header_end|>", "<|eot|>", "<|eom|>", "<|image|>",
                "<|image_start|>", "<|patch|>", "<|tile_x_separator|>", "<|python_start|>"),
               "<|begin_of_text|><|header_start|>system<|header_end|>\n\nYou describe images.<|eot|>"
               "<|header_start|>user<|header_end|>\n\n", "<|image|>", "<|header_start|>assistant<|header_end|>\n\n"),
}
FORMATS["qwen3_vl"] = FORMATS["qwen2_5_vl"]


def test_tiny_checkpoint_loads_through_the_auto_classes(tiny_llm):
    family = json.loads((Path(tiny_llm) / "TINY_RANDOM_MODEL.json").read_text())["family"]
    assert AutoConfig.from_pretrained(tiny_llm).model_type == family
    processor = AutoProcessor.from_pretrained(tiny_llm)
    model = AutoModelForImageTextToText.from_pretrained(tiny_llm)
    tokenizer = processor.tokenizer
    single, start, placeholder, end = FORMATS[family]
    for token in single:
        assert tokenizer.tokenize(token) == [token], token
    text = processor.apply_chat_template(to_hf_messages(MESSAGES), add_generation_prompt=True, tokenize=False)
    assert text.startswith(start) and placeholder in text and text.endswith(end), text
    inputs = processor(text=[text], images=[decode_data_url(MESSAGES[1]["content"][1]["image_url"]["url"])],
                       add_special_tokens=False, return_tensors="pt")
    image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert 0 < image_tokens <= 20  # the processor expanded the placeholder for this image
    if tokenizer.bos_token_id is not None:  # Llama 4: written by the template once, never doubled
        assert int((inputs["input_ids"] == tokenizer.bos_token_id).sum()) == 1


def test_llama4_tiny_model_is_llama4_inside(tiny_llm_folder):
    """The Llama 4 checkpoint has what makes the family: an MoE layer and a dense one, a NoPE layer,
    pixel-shuffled image tiles, the three end tokens, and a tokenizer that starts with <|begin_of_text|>."""
    folder = Path(tiny_llm_folder("llama4"))
    config = AutoConfig.from_pretrained(folder)
    text = config.text_config
    assert text.moe_layers == [1] and text.no_rope_layers == [1, 0] and text.num_local_experts == 2
    processor = AutoProcessor.from_pretrained(folder)
    tokenizer = processor.tokenizer
    assert type(processor).__name__ == "Llama4Processor" and tokenizer("hi").input_ids[0] == tokenizer.bos_token_id
    ends = {tokenizer.convert_ids_to_tokens(i) for i in json.loads((folder / "generation_config.json").read_text())
            ["eos_token_id"]}
    assert ends == {"<|end_of_text|>", "<|eom|>", "<|eot|>"}
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "report_no_mask", "arguments": {}}}]}
    result = {"role": "tool", "content": "no masks"}
    rendered = processor.apply_chat_template([{"role": "user", "content": "hi"}, call, result], tokenize=False)
    assert '<|python_start|>{"name": "report_no_mask", "parameters": {}}<|python_end|><|eot|>' in rendered
    assert rendered.endswith("<|header_start|>ipython<|header_end|>\n\nno masks<|eot|>")
    wide = Image.fromarray(np.zeros((60, 200, 3), dtype=np.uint8))
    inputs = processor(text=["<|image|>"], images=[wide], add_special_tokens=False, return_tensors="pt")
    tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())
    tiles = inputs["pixel_values"].shape[0]  # the tiles plus the global view, 56x56 each
    assert tiles > 1 and tokens.count("<|patch|>") == 4 * tiles and "<|tile_x_separator|>" in tokens


def test_reply_usage_and_timing_like_the_http_path(tiny_llm):
    async def main():
        async with LLMClient(LLMConfig(base_url=f"hf:{tiny_llm}", max_tokens=12)) as llm:
            return await llm.chat(MESSAGES), llm.usage, await llm.model_name()

    reply, usage, name = asyncio.run(main())
    assert name == tiny_llm
    assert reply.usage.prompt_tokens > 16 and 1 <= reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert usage.calls == 1 and usage.completion_tokens == reply.usage.completion_tokens
    assert reply.latency_s > 0 and reply.finish_reason in ("stop", "length")
    assert reply.message["role"] == "assistant"


def test_concurrent_requests_share_batches(tiny_llm):
    config = LLMConfig(base_url=f"hf:{tiny_llm}", max_tokens=8, local_max_batch=4)

    async def main():
        async with LLMClient(config) as llm:
            replies = await asyncio.gather(*(llm.chat(MESSAGES) for _ in range(4)))
            return replies, llm._backend.batches

    replies, batches = asyncio.run(main())
    assert sum(batches) == 4 and max(batches) <= 4
    # all four were queued while the model loaded (hundreds of ms), so they shared a padded batch
    assert max(batches) > 1
    assert all(1 <= r.usage.completion_tokens <= 8 for r in replies)
    assert len({r.usage.prompt_tokens for r in replies}) == 1  # padding is not counted as prompt


def test_batched_rows_are_independent_of_padding(tiny_llm):
    backend = HFBackend(tiny_llm, LLMConfig(base_url=f"hf:{tiny_llm}"))
    backend.load()
    short = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6}
    long = {"messages": MESSAGES, "max_tokens": 6}
    alone = backend.generate([short])[0]
    together = backend.generate([long, short])[1]
    assert together.usage.prompt_tokens == alone.usage.prompt_tokens  # padding is not counted
    assert 1 <= together.usage.completion_tokens <= 6


def test_bad_model_folder_fails_clearly(tmp_path):
    async def main():
        async with LLMClient(LLMConfig(base_url=f"hf:{tmp_path / 'missing'}")) as llm:
            await llm.chat([{"role": "user", "content": "hi"}])

    with pytest.raises(Exception, match="could not load the in-process model"):
        asyncio.run(main())


def test_in_process_models_take_only_data_urls():
    with pytest.raises(UsageError, match="data: URLs"):
        to_hf_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}])


@pytest.mark.skipif(vllm_local.available(), reason="vLLM is installed here")
def test_vllm_spec_without_vllm_says_what_to_install():
    with pytest.raises(UsageError, match=r"sam3-agent\[vllm\]"):
        LLMClient(LLMConfig(base_url="vllm:Qwen/Qwen3-VL-8B-Instruct"))


def test_make_tiny_llm_command(tmp_path):
    assert cli_main(["make-tiny-llm", str(tmp_path / "q3"), "--family", "qwen3_vl", "--seed", "3"]) == 0
    assert AutoConfig.from_pretrained(tmp_path / "q3").model_type == "qwen3_vl"
    with pytest.raises(SystemExit):
        cli_main(["make-tiny-llm", str(tmp_path / "x"), "--family", "llama"])
    with pytest.raises(UsageError, match="family"):
        write_tiny_llm(tmp_path / "bad", "llama3")


# ------------------------------------------------------------------ the --llm option group


def _llm_args(*argv: str, required: bool = True):
    parser = argparse.ArgumentParser()
    add_llm_options(parser, required_url=required)
    return parser.parse_args(list(argv))


def test_llm_option_group():
    pooled = llm_config(_llm_args("--llm", "http://a:8000/v1", "--llm", "http://b:8000/v1#2", "--no-constrain"))
    assert pooled.base_url == "http://a:8000/v1" and pooled.pool == ("http://b:8000/v1#2",)
    assert pooled.constrained == "off"
    assert llm_config(_llm_args("--llm-url", "http://old:1/v1")).base_url == "http://old:1/v1"  # the old spelling
    local = llm_config(_llm_args("--llm-batch", "2", "--llm-max-tokens", "300"))
    assert local.base_url == DEFAULT_LOCAL_SPEC and local.local_max_batch == 2 and local.max_tokens == 300
    assert llm_config(_llm_args(required=False)) is None  # servers: no --llm, no agent
    with pytest.raises(UsageError, match="pooled"):
        llm_config(_llm_args("--llm", "http://a/v1", "--llm", "hf:/m"))


def test_segment_command_runs_on_an_in_process_tiny_model(tiny_llm, tiny_checkpoint, tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(IMAGE).save(image)
    out = tmp_path / "run"
    code = cli_main(["segment", str(image), "the striped block", "--model", tiny_checkpoint, "--llm", f"hf:{tiny_llm}",
                     "--llm-max-tokens", "240", "--max-steps", "2", "--threshold", "0", "--no-verify",
                     "--out", str(out)])
    answer = json.loads((out / "result.json").read_text())
    assert answer["status"] in ("answered", "no_mask", "budget_exhausted") and code in (0, 3)
    trace = json.loads((out / "trace.json").read_text())
    assert trace["timings"]["completion_tokens"] > 0 and trace["timings"]["model_calls"] >= 1
    assert all(s["outcome"] in ("call", "limit") for s in trace["steps"] if s["node"] == "call_model")


def test_missing_model_folder_is_reported_before_loading(tiny_checkpoint, tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(IMAGE).save(image)
    assert cli_main(["segment", str(image), "a cup", "--model", tiny_checkpoint, "--llm", f"hf:{tmp_path}/none",
                     "--out", str(tmp_path / "run")]) == 2


def test_llm_benchmark_runs(tmp_path):
    out = tmp_path / "llm.json"
    report = load_bench("llm").main(["--replies", "2", "--only", "replies", "--out", str(out)])
    assert report == json.loads(out.read_text())
    for family in FAMILIES:
        assert report[f"{family}_constrained_on"]["valid"] == 2
        assert report[f"{family}_constrained_off"]["replies"] == 2


def test_http_server_shares_one_in_process_model(engine, tiny_llm):
    """Every /v1/agent query of a server goes through one client: the model loads once."""
    import base64
    import io

    import httpx
    from http_helpers import serve

    from agent.settings import AgentSettings

    png = io.BytesIO()
    Image.fromarray(IMAGE).save(png, format="PNG")
    body = {"image": {"base64": base64.b64encode(png.getvalue()).decode()}, "query": "the block"}
    llm = LLMConfig(base_url=f"hf:{tiny_llm}", max_tokens=240)
    agent = AgentSettings(max_steps=1, score_threshold=0.0, verification=False)
    server = serve(engine, llm=llm, agent=agent)
    with server, httpx.Client(base_url=server.base_url, timeout=300) as client:
        statuses = [client.post("/v1/agent", json=body).json()["status"] for _ in range(2)]
        backend = server.app.state.runtime.llm._backend
    assert set(statuses) <= {"answered", "no_mask", "budget_exhausted"}, statuses
    assert isinstance(backend, HFBackend) and sum(backend.batches) == 2  # both queries, one loaded model
