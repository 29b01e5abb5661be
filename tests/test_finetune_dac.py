"""The one-to-many branch (DAC-DETR query duplication) on a tiny random detector."""

from __future__ import annotations

import pytest
import torch

from finetune.dac import duplicated_queries
from finetune.model import Sam3ForTraining
from finetune.specs import DetectorSpec, detector_config

TINY = DetectorSpec(image_size=56, hidden=32, vit_hidden=32, vit_layers=2, vit_heads=2, vit_mlp=64, heads=2, mlp=64,
                    text_layers=1, num_queries=6, decoder_layers=2)
ATOL = 1e-5


@pytest.fixture(scope="module")
def model():
    from transformers import Sam3Model

    torch.manual_seed(0)
    return Sam3Model(detector_config(TINY)).eval()


def _inputs(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 512, (2, 32), generator=g)
    mask = torch.ones(2, 32, dtype=torch.long)
    mask[1, 10:] = 0
    return {"pixel_values": torch.randn(2, 3, 56, 56, generator=g), "input_ids": ids, "attention_mask": mask}


def _hidden(model, inputs: dict) -> torch.Tensor:
    """The last decoder layer's query states (P, Q or 2Q, H), layer-normed: O(1) even at random init,
    where the logits and boxes barely move."""
    kept = []
    handle = model.detr_decoder.register_forward_hook(lambda _m, _a, out: kept.append(out))
    try:
        model(**inputs)
    finally:
        handle.remove()
    return kept[0].intermediate_hidden_states[-1]


@torch.no_grad()
def test_one_to_one_half_equals_an_ordinary_forward(model):
    plain = model(**_inputs())
    with duplicated_queries(model.detr_decoder) as q:
        both = model(**_inputs())
    assert q == 6 and both.pred_logits.shape == (2, 12) and both.pred_masks.shape[1] == 12
    for name in ("pred_logits", "pred_boxes", "pred_masks"):
        torch.testing.assert_close(getattr(both, name)[:, :q], getattr(plain, name), atol=ATOL, rtol=0)
    torch.testing.assert_close(both.presence_logits, plain.presence_logits, atol=ATOL, rtol=0)
    # The o2m copies start from the same embeddings but skip self-attention, so they answer differently.
    with duplicated_queries(model.detr_decoder):
        hidden = _hidden(model, _inputs())
    assert (hidden[:, q:] - hidden[:, :q]).abs().max() > 1e-3  # ~0.02 at this random init


@torch.no_grad()
def test_one_to_many_queries_do_not_see_each_other(model):
    with duplicated_queries(model.detr_decoder) as q:
        before = _hidden(model, _inputs())
    saved = model.detr_decoder.query_embed.weight.clone()
    try:
        model.detr_decoder.query_embed.weight[0] += torch.randn(32, generator=torch.Generator().manual_seed(3))
        with duplicated_queries(model.detr_decoder):
            after = _hidden(model, _inputs())
    finally:
        model.detr_decoder.query_embed.weight.copy_(saved)
    torch.testing.assert_close(after[:, q + 1:], before[:, q + 1:], atol=ATOL, rtol=0)  # other o2m queries
    assert (after[:, q] - before[:, q]).abs().max() > 0.05  # o2m query 0 itself
    # Through self-attention the other one-to-one queries do feel the change.
    assert (after[:, 1:q] - before[:, 1:q]).abs().max() > 1e-4


def test_the_decoder_is_restored_even_after_an_error(model):
    decoder = model.detr_decoder
    embed, attention = decoder.query_embed, decoder.layers[0].self_attn
    with pytest.raises(RuntimeError), duplicated_queries(decoder):
        raise RuntimeError("boom")
    assert decoder.query_embed is embed and decoder.layers[0].self_attn is attention
    assert decoder.query_embed.weight.shape[0] == 6


def test_training_outputs_and_shared_gradients(model):
    from transformers import Sam3Model

    torch.manual_seed(1)
    sam3 = Sam3Model(detector_config(TINY))
    wrapper = Sam3ForTraining(sam3, one_to_many=True).train()
    assert not any("o2m" in name for name, _ in wrapper.named_parameters())  # no extra parameters to drop
    inputs = _inputs()
    batch = {**inputs, "image_index": torch.tensor([0, 1])}
    outputs = wrapper.detector_outputs(**batch)
    assert outputs.final.logits.shape == (2, 6) and len(outputs.aux) == 1 and len(outputs.o2m) == 2
    assert outputs.o2m[-1].masks is not None and outputs.o2m[0].masks is None
    # A loss on the o2m queries alone reaches the one set of query embeddings.
    outputs.o2m[-1].logits.sum().backward()
    grad = sam3.detr_decoder.query_embed.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    wrapper.eval()
    assert wrapper.detector_outputs(**batch).o2m == []  # evaluation never runs the branch
