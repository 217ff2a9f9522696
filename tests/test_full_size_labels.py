"""Full-size labels: filling the pixels away from boundaries from the grid's argmax gives
the labels of interpolating every pixel."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corrflow_napari import full_size_labels as fsl
from corrflow_napari.confidence import argmax_channels


def dense(probs, ids, out_hw, scale, cell):
    """Every pixel interpolated, then the argmax: the definition."""
    return ids[argmax_channels(fsl.upsample(probs, out_hw, scale, cell)).numpy()]


def blobs(h, w, centres, blur=7):
    """(V, h, w) soft labels: background plus one ellipse per centre, smoothed edges."""
    yy, xx = np.mgrid[:h, :w]
    objects = [((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1 for cy, cx, ry, rx in centres]
    hard = np.stack([~np.any(objects, 0)] + objects).astype(np.float32)
    soft = F.avg_pool2d(torch.from_numpy(hard)[None], blur, 1, blur // 2)[0]
    soft += 0.01 * torch.rand(soft.shape, generator=torch.Generator().manual_seed(0))
    return soft / soft.sum(0, keepdim=True)        # (noise: no exactly equal channels)


@pytest.mark.parametrize("out_hw, scale, cell", [
    ((2160, 3840), 480 / 2160, 1),          # 4K from the 480-line working grid
    ((1080, 1920), 480 / 1080, 1),
    ((1081, 1919), 480 / 1080, 1),          # rounding: padded and cropped by a pixel
    ((720, 1280), 480 / 720, 4),            # labels on the feature grid
])
def test_sparse_path_gives_the_labels_of_interpolating_every_pixel(out_hw, scale, cell,
                                                                    monkeypatch):
    h, w = round(out_hw[0] * scale / cell), round(out_hw[1] * scale / cell)
    probs = blobs(h, w, [(h * 0.4, w * 0.3, h * 0.2, w * 0.15),
                         (h * 0.6, w * 0.7, h * 0.15, w * 0.2),
                         (h * 0.55, w * 0.45, h * 0.2, w * 0.1)])     # touches the first
    ids = np.array([0, 5, 9, 200], np.uint8)
    monkeypatch.setattr(fsl, "SPARSE_PIXELS", 0)           # always the sparse path
    got = fsl.full_size_labels(probs, ids, out_hw, scale, cell)
    assert got.shape == out_hw and got.dtype == np.uint8
    want = dense(probs, ids, out_hw, scale, cell)
    assert set(np.unique(want)) == {0, 5, 9, 200}
    top2 = fsl.upsample(probs, out_hw, scale, cell).topk(2, dim=0).values.numpy()
    tie = top2[0] - top2[1] < 1e-6          # rounding may pick either of two equal ones
    assert tie.sum() < 1e-4 * tie.size
    assert not (got != want)[~tie].any()


def test_noisy_labels_fall_back_to_interpolating_every_pixel(monkeypatch):
    probs = torch.rand(3, 60, 80)
    probs /= probs.sum(0, keepdim=True)
    ids = np.array([0, 1, 2], np.uint16)
    monkeypatch.setattr(fsl, "SPARSE_PIXELS", 0)
    calls = []
    monkeypatch.setattr(fsl, "upsample", lambda *a: calls.append(1) or dense_up(*a))
    got = fsl.full_size_labels(probs, ids, (240, 320), 1.0, 4)
    assert calls, "most grid points lie next to a boundary: every pixel is interpolated"
    assert got.dtype == np.uint16 and np.array_equal(got, dense(probs, ids, (240, 320), 1.0, 4))


dense_up = fsl.upsample


def test_a_grid_at_full_size_is_its_argmax():
    probs = blobs(30, 40, [(15, 20, 8, 10)])
    ids = np.array([0, 7], np.int32)
    got = fsl.full_size_labels(probs, ids, (30, 40), 1.0, 1)
    assert np.array_equal(got, ids[argmax_channels(probs).numpy()])
