"""to_rgb8: any frame layout and dtype -> (H, W, 3) uint8."""
from __future__ import annotations

import numpy as np
import pytest

from corrflow_napari.io import to_rgb8


def test_layouts():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    out = to_rgb8(rgb)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(to_rgb8(np.dstack([rgb, rgb[..., :1]])), rgb)   # RGBA
    grey = rgb[..., 0]
    want = np.repeat(grey[..., None], 3, axis=2)
    for g in (grey, grey[..., None], np.dstack([grey, grey])):   # (H,W), (H,W,1), grey+alpha
        np.testing.assert_array_equal(to_rgb8(g), want)
    np.testing.assert_array_equal(to_rgb8(grey > 127)[..., 0], np.where(grey > 127, 255, 0))
    for bad in (np.zeros((4, 5, 5)), np.zeros((2, 4, 5, 3))):
        with pytest.raises(ValueError):
            to_rgb8(bad)


def test_scaling():
    f = np.array([[0.0, 0.5], [1.0, np.nan]], np.float32)
    np.testing.assert_array_equal(to_rgb8(f)[..., 0], [[0, 128], [255, 0]])   # own range
    np.testing.assert_array_equal(to_rgb8(f, scale=(0.0, 2.0))[..., 0], [[0, 64], [128, 0]])
    np.testing.assert_array_equal(to_rgb8(np.full((2, 2), 7, np.uint16))[..., 0], 0)  # flat
    np.testing.assert_array_equal(to_rgb8(np.array([[-5, 300]]), scale=(0, 255))[..., 0],
                                  [[0, 255]])                                  # clipped
