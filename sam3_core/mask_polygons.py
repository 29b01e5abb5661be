"""Masks as COCO polygons (:func:`mask_to_polygons`): the outer boundary of each 8-connected component, traced
on the pixel-corner grid, optionally simplified with Douglas-Peucker.

Pixel ``(r, c)`` is the square ``[c, c + 1] x [r, r + 1]``; a polygon is a flat ``[x0, y0, x1, y1, ...]`` list.
:mod:`sam3_core.postprocess` re-exports :func:`mask_to_polygons`.
"""

from __future__ import annotations

import numpy as np

from sam3_core.mask_arrays import MaskArray, to_bool_numpy

# Unit steps on the corner grid for the four edge directions: east, south, west, north (image
# coordinates, y pointing down). ``(d + 1) % 4`` is a right turn on screen, ``(d + 3) % 4`` a left turn.
_STEPS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int64)


def _boundary_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit boundary edges of ``mask`` on the corner grid, oriented with the foreground on their right.

    Returns ``starts`` ``(E, 2)`` int64 ``(x, y)``, ``dirs`` ``(E,)`` (0 east, 1 south, 2 west,
    3 north) and ``nxt`` ``(E,)``, the index of the edge that follows each edge on its loop. Where two
    loops meet at a corner (diagonal pixels), the walk turns left, which joins diagonal neighbours:
    8-connectivity. East edges come first, in raster order. ``mask`` must not be empty.
    """
    padded = np.pad(mask, 1)
    above, below = padded[:-1, 1:-1], padded[1:, 1:-1]  # horizontal edges: (H + 1, W)
    left, right = padded[1:-1, :-1], padded[1:-1, 1:]  # vertical edges: (H, W + 1)
    groups = (
        (below & ~above, (0, 0)),
        (left & ~right, (0, 0)),
        (above & ~below, (1, 0)),
        (right & ~left, (0, 1)),
    )
    starts_list, dirs_list = [], []
    for code, (selected, (dx, dy)) in enumerate(groups):
        ys, xs = np.nonzero(selected)
        starts_list.append(np.stack([xs + dx, ys + dy], axis=1))
        dirs_list.append(np.full(len(xs), code, dtype=np.int64))
    starts, dirs = np.concatenate(starts_list).astype(np.int64), np.concatenate(dirs_list)
    stride = mask.shape[1] + 1
    keys = (starts[:, 1] * stride + starts[:, 0]) * 4 + dirs
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    ends = starts + _STEPS[dirs]
    end_vertex = ends[:, 1] * stride + ends[:, 0]
    nxt = np.full(len(dirs), -1, dtype=np.int64)
    for turn in (3, 0, 1):  # left, straight, right: preferring left gives 8-connectivity
        wanted = end_vertex * 4 + (dirs + turn) % 4
        pos = np.minimum(np.searchsorted(sorted_keys, wanted), len(keys) - 1)
        hit = (nxt < 0) & (sorted_keys[pos] == wanted)
        nxt[hit] = order[pos[hit]]
    return starts, dirs, nxt


def _walk_loops(nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the permutation ``nxt`` into its cycles.

    Returns ``walk``, every edge index once with each loop's edges contiguous and in walking order, and
    ``offsets`` (``loops + 1``,): loop ``i`` is ``walk[offsets[i]:offsets[i + 1]]``. Loops come in the
    order of their lowest edge index, and each starts there.
    """
    following = nxt.tolist()
    seen = bytearray(len(following))
    walk: list[int] = []
    offsets = [0]
    for first in range(len(following)):
        if seen[first]:
            continue
        edge = first
        while not seen[edge]:
            seen[edge] = 1
            walk.append(edge)
            edge = following[edge]
        offsets.append(len(walk))
    return np.asarray(walk, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


def _douglas_peucker(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Keep-mask for an open ``(K, 2)`` chain simplified by Douglas-Peucker; both ends are kept."""
    keep = np.zeros(len(points), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        inner = points[i + 1 : j] - points[i]
        chord = points[j] - points[i]
        norm = float(np.hypot(chord[0], chord[1]))
        if norm > 0:
            dist = np.abs(chord[0] * inner[:, 1] - chord[1] * inner[:, 0]) / norm
        else:
            dist = np.hypot(inner[:, 0], inner[:, 1])
        k = int(np.argmax(dist))
        if dist[k] > tolerance:
            keep[i + 1 + k] = True
            stack.extend([(i, i + 1 + k), (i + 1 + k, j)])
    return keep


def _simplify_ring(vertices: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring, split at the vertex farthest from the first one.

    Falls back to the unsimplified ring when fewer than 3 vertices would remain.
    """
    if len(vertices) <= 3:
        return vertices
    far = int(np.argmax(np.hypot(*(vertices - vertices[0]).T)))
    ring = np.vstack([vertices, vertices[:1]])
    head, tail = ring[: far + 1], ring[far:]
    head, tail = head[_douglas_peucker(head, tolerance)], tail[_douglas_peucker(tail, tolerance)]
    simplified = np.vstack([head, tail[1:-1]])
    return simplified if len(simplified) >= 3 else vertices


def mask_to_polygons(mask: MaskArray, min_area: float = 0.0, tolerance: float = 0.0) -> list[list[float]]:
    """Outer boundaries of the connected components of an ``(H, W)`` mask as COCO polygons.

    Components are 8-connected (diagonal pixels belong together). Each polygon is a flat
    ``[x0, y0, x1, y1, ...]`` list of pixel-corner coordinates, traced clockwise on screen starting at
    the top-left corner of the component's top-left pixel, with only the corners (direction changes)
    kept; decoding it with ``pycocotools.mask.frPyObjects`` reproduces the component with its holes
    filled. Holes are ignored: a ring gives just its outer boundary, and a component inside another's
    hole gives its own polygon. Polygons come in raster order of their top-left pixel.

    ``min_area`` drops components whose outer polygon encloses fewer pixels (holes count as inside).
    ``tolerance`` > 0 simplifies each polygon with Douglas-Peucker (max deviation in pixels); a
    polygon that would drop below 3 vertices is kept unsimplified. Default 0: no simplification.
    """
    array = to_bool_numpy(mask, 2, "mask")
    if not array.any():
        return []
    starts, dirs, nxt = _boundary_edges(array)
    walk, offsets = _walk_loops(nxt)
    ends = starts + _STEPS[dirs]
    # twice the shoelace area of each loop: positive around a component, negative around a hole
    cross = starts[:, 0] * ends[:, 1] - ends[:, 0] * starts[:, 1]
    doubled_area = np.add.reduceat(cross[walk], offsets[:-1])
    previous = np.empty_like(nxt)
    previous[nxt] = np.arange(len(nxt))
    is_corner = dirs != dirs[previous]
    polygons: list[list[float]] = []
    for loop in np.flatnonzero((doubled_area > 0) & (doubled_area >= 2 * min_area)):
        edges = walk[offsets[loop] : offsets[loop + 1]]
        vertices = starts[edges[is_corner[edges]]].astype(np.float64)
        if tolerance > 0:
            vertices = _simplify_ring(vertices, tolerance)
        polygons.append(vertices.ravel().tolist())
    return polygons
