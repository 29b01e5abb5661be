"""Model-ready pixels of a video, produced one frame at a time.

transformers' video sessions keep ``processed_frames``, a dict of every preprocessed frame (``3 x S x S``
float each: 12 MB per frame for the 1008 px model). :class:`PixelFrames` stands in for that dict: it
preprocesses a frame when the model asks for it and keeps only the last few, so a session's memory does
not grow with the video's length. The session only ever calls ``len()`` and ``[index]`` on it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from .frames import FrameSource, check_index


class PixelFrames:
    """A read-only mapping ``frame index -> (3, S, S)`` pixel tensor, computed lazily with an LRU.

    Args:
        source: the decoded video.
        video_processor: the checkpoint's video processor (resize to ``S x S``, rescale, normalise).
        device: where the pixels are produced and stored (the inference device).
        dtype: the model's dtype.
        cache_size: preprocessed frames kept (the step being run needs one).
    """

    def __init__(self, source: FrameSource, video_processor, device: torch.device, dtype: torch.dtype,
                 cache_size: int = 2) -> None:
        self.source = source
        self._processor = video_processor
        self._device, self._dtype = device, dtype
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_size = max(1, cache_size)

    def __len__(self) -> int:
        return self.source.num_frames

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < self.source.num_frames

    def __getitem__(self, index: int) -> torch.Tensor:
        index = check_index(index, self.source.num_frames, self.source.name)
        cached = self._cache.get(index)
        if cached is None:
            cached = self._preprocess(self.source.frame(index))
            self._cache[index] = cached
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(index)
        return cached

    def _preprocess(self, frame) -> torch.Tensor:
        # A one-frame video: the processor's own resize/normalise, so pixels match what
        # ``Sam3VideoProcessor.init_video_session`` would have produced for the whole video.
        batch = self._processor(videos=[frame[None]], return_tensors="pt", device=self._device)
        return batch["pixel_values_videos"][0, 0].to(self._device, self._dtype)

    def clear(self) -> None:
        self._cache.clear()
