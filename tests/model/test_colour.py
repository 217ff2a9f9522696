"""sRGB -> Lab: known colours, and the 8-bit table path equal to the formula."""
import numpy as np
import torch

from corrflow_napari.model.colour import rgb_to_lab
from corrflow_napari.model.features import frames_to_uint8, lab_features


def test_known_colours():
    rgb = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0]], dtype=torch.float32) / 255
    lab = rgb_to_lab(rgb.T.reshape(1, 3, 3, 1))[0, :, :, 0].T
    torch.testing.assert_close(lab[0], torch.zeros(3), atol=1e-3, rtol=0)
    torch.testing.assert_close(lab[1], torch.tensor([100.0, 0.0, 0.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(lab[2], torch.tensor([53.24, 80.09, 67.20]), atol=0.05, rtol=0)


def test_eight_bit_levels_through_the_table_equal_the_formula():
    levels = np.arange(256, dtype=np.uint8)
    frames = np.stack(np.meshgrid(levels, levels[::-1], indexing="ij"), -1)[..., [0, 1, 0]]
    rgb8 = frames_to_uint8(frames[None], "cpu")                          # every level, 3x
    x = rgb8.float().div_(255)
    torch.testing.assert_close(rgb_to_lab(x, rgb8), rgb_to_lab(x), atol=1e-4, rtol=0)
    torch.testing.assert_close(lab_features(x, rgb8), lab_features(x), atol=1e-6, rtol=0)
