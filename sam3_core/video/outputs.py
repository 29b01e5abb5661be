"""Writing video results: a YouTube-VIS-style JSON document and an overlay video.

JSON layout (YouTube-VIS's, plus the object id, phrase and scores)::

    {"videos": [{"id": 1, "file_names": [...], "height": H, "width": W, "length": T, "fps": ...}],
     "categories": [{"id": 1, "name": "person"}, ...],       # one per phrase (+ "object" for clicked ones)
     "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "object_id": 7, "phrase": "person",
                      "score": 0.91, "iscrowd": 0, "height": H, "width": W, "length": 1,
                      "segmentations": [RLE or None per frame], "bboxes": [[x, y, w, h] or None per frame],
                      "areas": [int or None per frame]}]}

RLEs are COCO compressed RLE with ``counts`` as a string; boxes are COCO ``x, y, w, h`` in pixels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..postprocess import rle_to_mask
from .frames import FrameSource
from .results import FrameResult

logger = logging.getLogger(__name__)

CLICKED_CATEGORY = "object"  # category of objects added with points or a box
OVERLAY_CODECS = ("libx264", "mpeg4")  # first one PyAV can open is used


@dataclass
class _Track:
    phrase: str | None
    score: float
    frames: dict[int, tuple[dict, list[float], int]] = field(default_factory=dict)


class VisJsonWriter:
    """Collects :class:`FrameResult` s of one video (any order, repeats overwrite) into a VIS document."""

    def __init__(self, source: FrameSource, video_name: str | None = None) -> None:
        self.source = source
        self.video_name = video_name or source.name
        self._tracks: dict[int, _Track] = {}

    def add(self, result: FrameResult) -> None:
        """Record every object of ``result`` on its frame."""
        for obj_id, phrase, score, box, rle, mask in zip(result.object_ids, result.phrases, result.scores,
                                                         result.boxes, result.rles, result.masks):
            self.add_object(result.frame_index, obj_id, phrase, float(score), rle, box, int(mask.sum()))

    def add_object(self, frame_index: int, object_id: int, phrase: str | None, score: float, rle: dict,
                   box_xyxy: Sequence[float], area: int) -> None:
        """Record one object on one frame from its COCO RLE, pixel ``x1, y1, x2, y2`` box and area.

        For results kept as RLEs (the video agent's masklets); the first call for an object sets its
        phrase and score.
        """
        track = self._tracks.setdefault(int(object_id), _Track(phrase, float(score)))
        x1, y1, x2, y2 = (float(v) for v in box_xyxy)
        track.frames[int(frame_index)] = (rle, [x1, y1, x2 - x1, y2 - y1], int(area))

    def _categories(self) -> dict[str | None, int]:
        names = sorted({t.phrase for t in self._tracks.values() if t.phrase is not None})
        ids: dict[str | None, int] = {name: i + 1 for i, name in enumerate(names)}
        if any(t.phrase is None for t in self._tracks.values()):
            ids[None] = len(names) + 1
        return ids

    def document(self) -> dict:
        """The YouTube-VIS-style dict (see the module docstring)."""
        total = self.source.num_frames
        height, width = self.source.height, self.source.width
        categories = self._categories()
        annotations = []
        for number, (obj_id, track) in enumerate(sorted(self._tracks.items()), start=1):
            per_frame = [track.frames.get(t) for t in range(total)]
            annotations.append({
                "id": number, "video_id": 1, "category_id": categories[track.phrase], "object_id": obj_id,
                "phrase": track.phrase, "score": round(track.score, 6), "iscrowd": 0,
                "height": height, "width": width, "length": 1,
                "segmentations": [entry[0] if entry else None for entry in per_frame],
                "bboxes": [[round(v, 2) for v in entry[1]] if entry else None for entry in per_frame],
                "areas": [entry[2] if entry else None for entry in per_frame],
            })
        video = {"id": 1, "name": str(self.video_name), "file_names": self.source.file_names(), "height": height,
                 "width": width, "length": total, "fps": self.source.fps}
        return {
            "videos": [video],
            "categories": [{"id": cid, "name": name if name is not None else CLICKED_CATEGORY}
                           for name, cid in categories.items()],
            "annotations": annotations,
        }

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.document()))
        return path


def frame_masks(document: dict, frame_index: int) -> tuple[np.ndarray | None, list[int]]:
    """The ``(N, H, W)`` bool masks and object ids present on ``frame_index`` of a VIS document."""
    masks, ids = [], []
    for annotation in document["annotations"]:
        rle = annotation["segmentations"][frame_index]
        if rle is not None:
            masks.append(rle_to_mask(rle))
            ids.append(int(annotation["object_id"]))
    return (np.stack(masks) if masks else None), ids


def pick_codec(preferred: tuple[str, ...] = OVERLAY_CODECS) -> str:
    """The first encoder of ``preferred`` this PyAV build has (libx264 in PyPI wheels, else mpeg4)."""
    import av

    for name in preferred:
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):  # PyAV's UnknownCodecError is a ValueError
            continue
    raise UsageError(f"none of the video encoders {preferred} is available in this PyAV build")


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad to even height and width (yuv420p needs them) by repeating the last row / column."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge") if pad_h or pad_w else frame


def write_overlay_video(source: FrameSource, document: dict, path: str | Path, *, codec: str | None = None,
                        fps: float | None = None) -> Path:
    """Render every frame of ``source`` with its objects' masks (numbered, coloured by id) into a video.

    Args:
        source: the video the document describes. document: a :meth:`VisJsonWriter.document`.
        path: output file (``.mp4``). codec: an encoder name; default :func:`pick_codec`.
        fps: frame rate; default the source's.
    """
    import av

    from sam3_core.drawing import render_masks

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or pick_codec()
    rate = Fraction(fps or source.fps or 25.0).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = source.width + source.width % 2, source.height + source.height % 2
        stream.pix_fmt = "yuv420p"
        for index in range(source.num_frames):
            image = source.frame(index)
            masks, ids = frame_masks(document, index)
            if masks is not None:
                image = np.asarray(render_masks(image, masks, ids))
            frame = av.VideoFrame.from_ndarray(_even(np.ascontiguousarray(image)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    logger.info("overlay video (%s, %d frames) written to %s", codec, source.num_frames, path)
    return path
