"""The shipped default weights: present, small, the documented architecture and
inference settings, and they carry the sample's mask like the Lab baseline does."""
from dataclasses import replace

import numpy as np

from corrflow_napari.model import SHIPPED_WEIGHTS, InferenceSettings, load_model
from corrflow_napari.propagation import propagate_labels
from corrflow_napari.sample_data import load_sample

FRAME_BN = True           # the shipped inference settings (model card)
LAB_MIX = 0.25


def test_shipped_weights_load_with_documented_settings():
    assert SHIPPED_WEIGHTS.is_file(), "corrflow_napari/weights/corrflow_default.pt is missing"
    assert SHIPPED_WEIGHTS.stat().st_size < 30 * 2 ** 20
    model = load_model(device="cpu")
    assert model.name == "corrflow"
    assert model.config.width == 0.5                      # the CPU recipe (model card)
    assert model.inference == InferenceSettings(metric="negsqdist", temperature=0.05,
                                                normalize=True, lab_weight=3.0,
                                                frame_bn=FRAME_BN, lab_mix=LAB_MIX)
    assert model.centroids.shape == (16, 2) and bool(model.centroids.abs().sum() > 0)


def test_shipped_weights_follow_the_sample_like_the_lab_baseline():
    frames, mask = load_sample()
    frames = frames[:12]
    ours = propagate_labels(load_model(device="cpu"), frames, {0: mask})
    lab = propagate_labels(load_model("lab", device="cpu"), frames, {0: mask})
    for t in (5, 11):
        a, b = ours[t] > 0, lab[t] > 0
        assert a.any()
        assert (a & b).sum() / (a | b).sum() > 0.7, t


def test_frame_bn_normalises_each_frame_by_itself_and_keeps_running_stats():
    import torch

    from corrflow_napari.model.encoder import EncoderConfig
    from corrflow_napari.model.features import CorrFlowModel
    torch.manual_seed(0)
    model = CorrFlowModel(EncoderConfig(width=0.25)).eval()
    for m in model.modules():                     # running stats unlike any frame's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(0.3)
            m.running_var.fill_(4.0)
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
    frames[1] //= 3                               # a darker second frame
    stored = model.encode(frames)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.inference = replace(model.inference, frame_bn=True)
    both = model.encode(frames)
    alone = torch.cat([model.encode(frames[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(both, alone, atol=1e-4, rtol=1e-4)   # a frame ignores the others
    assert (both - stored).abs().max() > 1e-2     # and differ from running statistics
    for k, v in model.state_dict().items():       # nothing was updated
        torch.testing.assert_close(v, before[k])
    assert all(not m.training for m in model.modules())
    assert model.inference.to_dict()["frame_bn"] is True
