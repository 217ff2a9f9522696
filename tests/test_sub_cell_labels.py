"""Labels finer than the feature grid (``label_stride``): thin parts survive propagation."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corrflow_napari.propagation import PropagationSettings, propagate
from corrflow_napari.sub_cell_labels import fine_probs, label_channels, seed_values
from tests.test_propagation import iou


def thin_bars(t=8, h=64, w=96, step=4):
    """A 2-px wide vertical red bar (id 5) and a 16-px square (id 9) moving right."""
    frames = np.full((t, h, w, 3), 90, np.uint8)
    labels = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        x = 10 + step * i
        frames[i, 8:56, x:x + 2] = (230, 40, 40)
        labels[i, 8:56, x:x + 2] = 5
        frames[i, 20:36, x + 20:x + 36] = (40, 60, 230)
        labels[i, 20:36, x + 20:x + 36] = 9
    return frames, labels


def _onehot(mask: np.ndarray, n: int) -> torch.Tensor:
    return F.one_hot(torch.from_numpy(mask.astype(np.int64)), n).permute(2, 0, 1)


@pytest.mark.parametrize("stride", [4, 2, 1])
def test_layout_and_round_trip(stride):
    mask = np.zeros((40, 52), np.int64)
    mask[4:36, 9] = 1                              # a 1-px line
    mask[10:20, 30:44] = 2
    values = seed_values(_onehot(mask, 3), (10, 13), stride)
    s2 = (4 // stride) ** 2
    assert values.shape == (3 + 2 * s2 if stride < 4 else 3, 10, 13)
    assert label_channels(values, stride) == 3
    cells = values[:3]
    torch.testing.assert_close(cells.sum(0), torch.ones(10, 13))
    probs = fine_probs(values, stride)
    assert probs.shape == (3, 40 // stride, 52 // stride)
    back = F.interpolate(probs[None], size=(40, 52), mode="bilinear")[0].argmax(0).numpy()
    line = iou(back == 1, mask == 1)
    assert iou(back == 2, mask == 2) > 0.9
    if stride == 1:
        assert line > 0.9                          # the line is carried exactly
    if stride == 4:
        assert line < 0.5                          # a quarter-cell line is lost


def test_detail_is_zero_away_from_objects():
    mask = np.zeros((32, 32), np.int64)
    mask[0:8, 0:8] = 1
    values = seed_values(_onehot(mask, 2), (8, 8), 1)
    assert (values[2:, 3:, 3:] == 0).all()         # the attention may skip empty tiles


def test_thin_bar_survives_propagation(lab):
    frames, gt = thin_bars()
    got = {}
    for stride in (4, 1):
        res = propagate(lab, frames, {0: gt[0]}, settings=PropagationSettings(label_stride=stride))
        got[stride] = np.mean([iou(res.labels[t] == 5, gt[t] == 5) for t in range(1, len(gt))])
        square = np.mean([iou(res.labels[t] == 9, gt[t] == 9) for t in range(1, len(gt))])
        assert square > 0.8, (stride, square)
        assert res.confidence.shape == (len(gt),) and np.isfinite(res.confidence).all()
        assert res.object_confidence.shape == (len(gt), 2)
        np.testing.assert_array_equal(res.labels[0], gt[0])
    assert got[4] < 0.5 < 0.7 < got[1], got


def test_auto_stride_keeps_lab_colour_on_the_feature_grid(lab):
    # Lab colour features (4x4 averages) cannot tell a flat square's top edge from its
    # bottom edge: carried through recent frames, sub-cell patterns of the half-covered
    # edge cells flip. The auto stride (None) keeps Lab colour at 4.
    from tests.test_propagation import moving_squares
    frames, gt = moving_squares(t=8, step=4)
    assert lab.label_stride == 4
    scores = {}
    for stride in (None, 4, 1):
        res = propagate(lab, frames, {0: gt[0]}, settings=PropagationSettings(label_stride=stride))
        scores[stride] = min(iou(res.labels[t] == 3, gt[t] == 3) for t in range(1, len(gt)))
    assert scores[None] == scores[4] > 0.9 > 0.8 > scores[1], scores
