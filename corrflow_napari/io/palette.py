"""Label colours: the DAVIS / PASCAL VOC palette and user palettes completed with it."""
from __future__ import annotations

import numpy as np

from ..errors import InputError


def davis_palette(n: int = 256) -> np.ndarray:
    """The DAVIS / PASCAL VOC colour map as ``(n, 3) uint8``.

    Id ``i`` gets its colour by spreading the bits of ``i`` over the channels, three
    at a time: bit 0 -> red, bit 1 -> green, bit 2 -> blue, placed from the most
    significant bit of each channel downwards (bits 3, 4, 5 go one place lower, ...).
    """
    n = int(n)
    if n < 0:
        raise ValueError("n must be >= 0")
    ids = np.arange(n, dtype=np.int64)
    pal = np.zeros((n, 3), np.int64)
    shift = 7
    rest = ids.copy()
    while shift >= 0 and np.any(rest):
        for ch in range(3):
            pal[:, ch] |= ((rest >> ch) & 1) << shift
        rest >>= 3
        shift -= 1
    return pal.astype(np.uint8)


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) colours 0..255 -> (...) int32 ``0xRRGGBB``."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def full_palette(palette) -> np.ndarray:
    """(N,3) colours (0-255, or 0-1 floats) -> (256,3) uint8, missing entries DAVIS."""
    out = davis_palette(256)
    if palette is None:
        return out
    p = np.asarray(palette)
    if p.ndim != 2 or p.shape[1] not in (3, 4):
        raise InputError(f"palette has shape {p.shape}; expected (N,3) RGB colours")
    p = p[:256, :3]
    if p.dtype.kind == "f":
        if p.size and np.nanmax(p) <= 1.0:
            p = p * 255.0
        p = np.rint(np.nan_to_num(p))
    out[: len(p)] = np.clip(p, 0, 255).astype(np.uint8)
    return out

