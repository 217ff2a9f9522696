"""scripts/resolution_ceiling.py: the feature-grid round trip keeps what 1/4 resolution
can hold (a block) and loses what it cannot (a 1-pixel line)."""
import numpy as np

from .load import load_script


def test_round_trip_keeps_blocks_and_loses_thin_lines():
    masks = np.zeros((2, 64, 96), np.uint8)
    masks[0, 16:48, 24:72] = 1           # a block aligned to the 4-px grid
    masks[1, 30, 10:90] = 2              # a 1-px line, another id
    masks[1, 8:24, 8:24] = 1
    out = load_script("resolution_ceiling").round_trip(masks)
    assert out.dtype == masks.dtype and out.shape == masks.shape
    for t in (0, 1):                     # blocks come back but for their corner pixels
        a, b = out[t] == 1, masks[t] == 1
        assert (a & b).sum() / (a | b).sum() > 0.98 and not (a & ~b).any()
    assert not (out[1] == 2).any()       # a quarter of a cell never wins the argmax


def test_finer_label_strides_keep_thin_lines():
    trip = load_script("resolution_ceiling").round_trip
    for stride, width in ((1, 1), (2, 2)):        # a line as wide as the label stride
        masks = np.zeros((1, 64, 96), np.uint8)
        masks[0, 30:30 + width, 10:90] = 2
        masks[0, 8:24, 8:24] = 1
        line, got = masks[0] == 2, trip(masks, stride)[0] == 2
        assert (got & line).sum() / (got | line).sum() > 0.9, stride
        assert (trip(masks, 4)[0] == 2).sum() < line.sum() / 2   # the feature grid loses it
