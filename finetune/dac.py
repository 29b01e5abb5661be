"""The one-to-many branch as SAM 3 trains it: DAC-DETR's "divide and conquer" query duplication.

During training SAM 3 feeds its decoder every query twice. The first copy (one-to-one, o2o) is the
inference graph: Hungarian-matched, with self-attention among the queries and the presence token, which
is what lets one query claim an object and the others stand down. The second copy (one-to-many, o2m)
uses the *same* query embeddings and reference boxes and the same layers, but skips self-attention
(its tokens pass the self-attention block with a zero update, then the block's layer norm), so each o2m
query sees only the text and the image and may, and is asked to, pile onto an object with others
(several positives per object). The o2m copy therefore trains the shared layers with dense supervision
without teaching the self-attention to keep duplicates, and since it shares every parameter nothing has
to be dropped at export.

transformers' ``Sam3DetrDecoder`` has no such switch, so :func:`duplicated_queries` adds it for the
length of a forward pass: the decoder's ``query_embed`` and ``reference_points`` are swapped for views
that repeat the weights twice (the gradient of both copies reaches the one parameter), and each layer's
self-attention for a wrapper that attends among ``1 + Q`` tokens (presence + o2o) only. Everything after
the decoder (box head, scoring, mask decoder) works per query, so the model's outputs then hold ``2Q``
queries: the first ``Q`` equal to an ordinary forward's, the last ``Q`` the o2m ones.

Measured here (fine-tuning the demo detector on shifted synthetic data, 100 held-out images, same seed and
steps): the branch lowers held-out mask AP (1000 steps: 0.319 off, 0.279 on; cgF1 30.9 vs 22.0) and makes
the model keep several masks per object, so fine-tuning leaves it off unless asked (``--o2m``). An earlier
version that gave the o2m queries their own embeddings *with* self-attention was worse still (300 steps:
AP 0.225 vs 0.294 off; 56% of kept masks duplicates vs 15%). The harm grows with the o2m matcher's
``topk`` (300 steps: AP 0.281 at topk 1, 0.258 at 2, 0.234 at SAM 3's 4), as expected of shared weights
taught to fire several queries per object when the model has only 16 queries to share among them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class _Repeated(nn.Module):
    """Stands in for an ``nn.Embedding`` whose ``weight`` the decoder reads: that weight twice, stacked."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.inner = embedding

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.inner.weight, self.inner.weight], dim=0)


class _O2oSelfAttention(nn.Module):
    """Self-attention over the first ``keep`` tokens (presence + o2o queries); zero update for the rest."""

    def __init__(self, attention: nn.Module, keep: int) -> None:
        super().__init__()
        self.inner, self.keep = attention, keep

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None = None, **kwargs):
        n = self.keep
        if attention_mask is not None:
            attention_mask = attention_mask[..., :n, :n]
        out, weights = self.inner(query[:, :n], key[:, :n], value[:, :n], attention_mask, **kwargs)
        return torch.cat([out, torch.zeros_like(query[:, n:])], dim=1), weights


@contextlib.contextmanager
def duplicated_queries(decoder: nn.Module) -> Iterator[int]:
    """Within the block, ``decoder`` (a ``Sam3DetrDecoder``) runs ``2Q`` queries DAC-style; yields ``Q``.

    Not re-entrant and not thread-safe (it swaps submodules of the model for the duration).
    """
    num_queries = decoder.query_embed.weight.shape[0]
    saved_embed, saved_reference = decoder.query_embed, decoder.reference_points
    saved_attention = [layer.self_attn for layer in decoder.layers]
    decoder.query_embed, decoder.reference_points = _Repeated(saved_embed), _Repeated(saved_reference)
    for layer, attention in zip(decoder.layers, saved_attention):
        layer.self_attn = _O2oSelfAttention(attention, 1 + num_queries)  # +1: the presence token
    try:
        yield num_queries
    finally:
        decoder.query_embed, decoder.reference_points = saved_embed, saved_reference
        for layer, attention in zip(decoder.layers, saved_attention):
            layer.self_attn = attention
