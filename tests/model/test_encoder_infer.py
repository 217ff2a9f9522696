"""The encoder's fast inference path (channels-last, in-place, functional BatchNorm, fixed
statistics folded into the convolutions) gives the module forward's result up to float
rounding, touches no module state, and leaves the propagated labels of the sample clip
unchanged; statistics measured on some frames can normalise others."""

import pytest
import torch

from corrflow_napari.model import CorrFlowEncoder, EncoderConfig, load_model
from corrflow_napari.model.features import _batchnorm_uses_input_statistics
from corrflow_napari.propagation import propagate_labels
from corrflow_napari.sample_data import load_sample


@pytest.fixture(scope="module")
def encoder():
    """A small encoder with non-trivial BatchNorm statistics and affine parameters."""
    torch.manual_seed(0)
    enc = CorrFlowEncoder(EncoderConfig(width=0.25))
    for bn in (m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return enc.eval()


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("batch", [1, 3])
def test_infer_equals_eval_forward(encoder, batch):
    x = torch.rand(batch, 3, 37, 61)
    before = state(encoder)
    with torch.no_grad():
        ref = encoder(x)
    out = encoder.infer(x)
    assert out.shape == ref.shape == (batch, 64, 10, 16)
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    for k, v in state(encoder).items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("batch", [1, 3])
def test_infer_frame_bn_equals_per_frame_training_mode_bn(encoder, batch):
    x = torch.rand(batch, 3, 40, 56)
    x[-1] *= 0.3                                     # frames with different statistics
    before = state(encoder)
    with torch.no_grad(), _batchnorm_uses_input_statistics(encoder):
        ref = torch.cat([encoder(x[i:i + 1]) for i in range(batch)])
    out = encoder.infer(x, frame_bn=True)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    assert not torch.allclose(out, encoder.infer(x), atol=1e-3)   # frame BN really differs
    assert all(not m.training for m in encoder.modules())
    for k, v in state(encoder).items():
        assert torch.equal(v, before[k]), k


def test_model_uses_infer_only_without_autograd():
    model = load_model(device="cpu")
    x = torch.randint(0, 256, (1, 36, 52, 3), dtype=torch.uint8)
    fast = model.encode(x)
    model.fast_inference = False
    try:
        slow = model.encode(x)
    finally:
        del model.fast_inference                      # back to the class default
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)
    xf = x.permute(0, 3, 1, 2).float() / 255
    assert model.features(xf).requires_grad          # training keeps the module forward


def test_sample_labels_unchanged_by_the_fast_path():
    frames, mask = load_sample()
    frames = frames[:16]
    model = load_model(device="cpu")
    fast = propagate_labels(model, frames, {0: mask})
    model.fast_inference = False
    slow = propagate_labels(model, frames, {0: mask})
    for t in range(1, len(frames)):
        a, b = fast[t] > 0, slow[t] > 0
        assert (a & b).sum() / max(1, (a | b).sum()) > 0.999, t
    assert (fast != slow).mean() < 1e-4
    assert model.inference.frame_bn                    # the shipped weights use frame BN


def test_statistics_shared_by_frames(encoder):
    """``statistics`` gives each frame's own (B, C) rows: given back, each frame is
    normalised as with frame_bn (a shared convolution, then each frame's scale and shift);
    averaged to (C,), every frame is normalised alike."""
    x = torch.rand(3, 3, 40, 56)
    x[1] *= 0.3                                      # a darker frame
    rows = encoder.statistics(x)
    assert len(rows) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())
    assert all(m.shape == v.shape == (3, m.shape[1]) for m, v in rows)
    own = encoder.infer(x, frame_bn=True)
    torch.testing.assert_close(encoder.infer(x, stats=rows), own,
                               rtol=1e-4, atol=1e-4 * own.abs().max().item())
    shared = [(m.mean(0), v.mean(0)) for m, v in rows]
    alike = encoder.infer(x, stats=shared)
    torch.testing.assert_close(alike[1:2], encoder.infer(x[1:2], stats=shared),
                               rtol=1e-4, atol=1e-4 * alike.abs().max().item())
    assert not torch.allclose(alike[1:2], own[1:2], atol=1e-3)
