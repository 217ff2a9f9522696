"""From label probabilities on the working grid to label ids at the frame's full size.

A propagated frame's probabilities ``(V, h, w)`` live on a grid of ``cell``-pixel cells
of the frame resized by ``scale``; the labels a user gets are the argmax of their bilinear
upsampling to the frame's ``(H, W)``. At 4K that is ~8 million pixels x V channels per
frame, most of them far from any boundary. :func:`full_size_labels` gives the same
labels for a fraction of the work: where the four grid points a pixel is interpolated
from all have the same argmax, the pixel has that argmax too (a convex combination of
probability vectors whose largest entry is channel c has its largest entry at c), so it
is filled from the grid's argmax; only the pixels next to a boundary are interpolated.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .confidence import argmax_channels

# interpolate only next to boundaries for frames of at least this many pixels (measured,
# a realistic two-object frame: 720p 10 -> 6 ms, 1080p 24 -> 5 ms, 4K 112 -> 12 ms) when
# at most this fraction of the grid lies next to one (else every pixel is interpolated)
SPARSE_PIXELS = 500_000
SPARSE_MIXED = 0.05


def upsampled_size(hw: tuple[int, int], scale: float, cell: int) -> tuple[int, int]:
    """Size of a grid of ``hw`` ``cell``-pixel cells of a frame resized by ``scale``, back
    at the frame's scale (before cropping or padding to the frame's exact size)."""
    return int(round(cell * hw[0] / scale)), int(round(cell * hw[1] / scale))


def upsample(values: torch.Tensor, out_hw: tuple[int, int], scale: float,
             cell: int = 4) -> torch.Tensor:
    """(V, h, w) maps on a grid of ``cell``-pixel cells (4: feature resolution) ->
    (V, H, W) at full frame size (bilinear; the border padded by replication where
    rounding left it short)."""
    size = upsampled_size(values.shape[-2:], scale, cell)
    up = F.interpolate(values[None], size=size, mode="bilinear", align_corners=False)[0]
    up = up[:, :out_hw[0], :out_hw[1]]
    if up.shape[-2:] != tuple(out_hw):
        up = F.pad(up[None], (0, out_hw[1] - up.shape[-1], 0, out_hw[0] - up.shape[-2]),
                   mode="replicate")[0]
    return up


def _support(n_in: int, n_up: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``n_out`` output rows (or columns) of a bilinear resize of ``n_in`` to
    ``n_up`` (align_corners False, as torch computes it in float32), cropped or padded by
    replication to ``n_out``: the two input rows it reads and the second one's weight."""
    step = np.float32(n_in) / np.float32(n_up)
    src = np.maximum(step * (np.arange(n_up, dtype=np.float32) + np.float32(0.5))
                     - np.float32(0.5), np.float32(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = i0 + (i0 < n_in - 1)
    lam = np.clip(src - i0, 0, 1).astype(np.float32)
    pick = np.minimum(np.arange(n_out), n_up - 1)            # crop, or repeat the last
    return i0[pick], i1[pick], lam[pick]


def full_size_labels(probs: torch.Tensor, ids: np.ndarray, out_hw: tuple[int, int],
                     scale: float, cell: int) -> np.ndarray:
    """(V, h, w) probabilities -> (H, W) label ids: ``ids[argmax]`` of :func:`upsample`'s
    output (the first maximum wins ties), in ``ids``' dtype. ids: (V,) the id of each
    channel."""
    h, w = probs.shape[-2:]
    grid = argmax_channels(probs).cpu().numpy()
    size = upsampled_size((h, w), scale, cell)
    if size == (h, w) and tuple(out_hw) == (h, w):
        return ids[grid]                                # already at full size
    # a grid point (y, x) "agrees" when it, its right, lower and lower-right neighbours
    # (replicated past the edge) share the argmax; a pixel reads exactly those four
    nxt = np.pad(grid, ((0, 1), (0, 1)), mode="edge")
    agree = (grid == nxt[1:, :-1]) & (grid == nxt[:-1, 1:]) & (grid == nxt[1:, 1:])
    if out_hw[0] * out_hw[1] < SPARSE_PIXELS or agree.mean() < 1 - SPARSE_MIXED:
        return ids[argmax_channels(upsample(probs, out_hw, scale, cell)).cpu().numpy()]
    y0, y1, ly = _support(h, size[0], out_hw[0])
    x0, x1, lx = _support(w, size[1], out_hw[1])
    rows, cols = np.bincount(y0, minlength=h), np.bincount(x0, minlength=w)

    def expand(a: np.ndarray) -> np.ndarray:           # grid -> (H, W); y0, x0 are sorted
        return np.repeat(np.repeat(a, rows, axis=0), cols, axis=1)

    labels = expand(ids[grid])
    mixed = np.flatnonzero(~expand(agree))
    if mixed.size:
        yy, xx = np.divmod(mixed, out_hw[1])
        p = probs.float().cpu().numpy()
        wy, wx = ly[yy], lx[xx]
        top = p[:, y0[yy], x0[xx]] * (1 - wx) + p[:, y0[yy], x1[xx]] * wx
        bottom = p[:, y1[yy], x0[xx]] * (1 - wx) + p[:, y1[yy], x1[xx]] * wx
        labels.reshape(-1)[mixed] = ids[np.argmax(top * (1 - wy) + bottom * wy, axis=0)]
    return labels
