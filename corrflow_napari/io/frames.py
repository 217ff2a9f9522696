"""Converting one frame of any layout and dtype to ``(H, W, 3) uint8`` RGB.

Grey input is replicated to 3 channels, alpha is dropped, and non-uint8 input is
rescaled from a (min, max) range to 0..255; sources pass one range for the whole video
(:func:`value_range`), so the relative brightness of frames is preserved.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def value_range(frames: Iterable[np.ndarray]) -> tuple[float, float]:
    """Global (min, max) over the finite values of a sequence of arrays, streaming;
    (0, 0) when there are none."""
    lo, hi = np.inf, -np.inf
    for f in frames:
        f = np.asarray(f)
        if f.dtype.kind == "f":
            f = f[np.isfinite(f)]
        if f.size == 0:
            continue
        lo = min(lo, float(f.min()))
        hi = max(hi, float(f.max()))
    if not np.isfinite(lo):
        lo, hi = 0.0, 0.0
    return lo, hi


def needs_scaling(dtype) -> bool:
    """Whether frames of ``dtype`` are rescaled by :func:`to_rgb8` (all but uint8, bool)."""
    dtype = np.dtype(dtype)
    return dtype != np.uint8 and dtype != np.bool_


def to_rgb8(frame: np.ndarray, scale: tuple[float, float] | None = None) -> np.ndarray:
    """One frame (H,W) or (H,W,C) with C = 1..4, any numeric dtype -> (H,W,3) uint8.

    C = 1 or 2 is grey (+ alpha), C = 4 is RGBA; alpha is dropped.  bool is 0/255.
    Other non-uint8 data is mapped linearly from ``scale`` = (min, max) to 0..255
    (default: the frame's own finite range; a constant frame becomes 0; NaN -> 0).
    Raises ValueError for other shapes.
    """
    a = np.asarray(frame)
    if a.ndim == 3:
        c = a.shape[2]
        if c in (1, 2):          # grey (+ alpha)
            a = a[:, :, 0]
        elif c == 4:             # RGBA: drop alpha
            a = a[:, :, :3]
        elif c != 3:
            raise ValueError(f"frame has {c} channels; expected 1, 3 or 4")
    elif a.ndim != 2:
        raise ValueError(f"frame has shape {a.shape}; expected (H,W) or (H,W,C)")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        lo, hi = scale if scale is not None else value_range([a])
        f = a.astype(np.float32)
        if hi > lo:
            f = (f - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        else:
            f = np.zeros_like(f)
        f = np.nan_to_num(f, nan=0.0, posinf=255.0, neginf=0.0)
        a = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a)
