"""Work around a shape bug of transformers' SAM 3 tracker when its width equals its memory width.

Object pointers are stored as ``(1, 1, C)`` per object and frame, so stacking them gives
``(S, 1, 1, C)``. ``Sam3TrackerVideoModel._process_object_pointers`` only reshapes that to the ``(S', 1, 64)``
memory-token layout when the tracker is wider than its 64-channel memory (``mem_dim < hidden``: the pointers
are split into 64-wide tokens); at ``hidden == 64`` the 4-D stack reaches ``torch.cat`` with the 3-D spatial
memories and tracking fails from the second frame on (seen with transformers 5.20.2). The demo model's tracker
is 64 wide (the width of the detector neck it shares), so :func:`install` flattens each pointer to
``(B, C)`` before transformers' own method runs. For wider trackers the result is unchanged (the reshape
transformers does gives the same layout), so installing it is harmless.
"""

from __future__ import annotations

import functools

import torch


def install(tracker) -> None:
    """Make ``tracker`` (a ``Sam3TrackerVideoModel`` instance) accept object pointers of any leading shape."""
    if "_process_object_pointers" in tracker.__dict__:
        return
    tracker._process_object_pointers = functools.partial(_flat_pointers, tracker)


def _flat_pointers(tracker, temporal_offsets: list[int], pointer_tokens: list[torch.Tensor],
                   max_object_pointers_to_use: int, batch_size: int, num_channels: int, device: torch.device):
    flat = [token.reshape(-1, token.shape[-1]) for token in pointer_tokens]  # (B, C) each
    return type(tracker)._process_object_pointers(tracker, temporal_offsets, flat, max_object_pointers_to_use,
                                                  batch_size, num_channels, device)
