"""Training through the inference mixture (TrainConfig.lab_mix)."""
import pytest
import torch

from corrflow_napari.errors import InputError
from corrflow_napari.model.encoder import EncoderConfig
from corrflow_napari.model.features import CorrFlowModel
from corrflow_napari.training import TrainConfig, clip_loss


def _setup(texture):
    torch.manual_seed(0)
    model = CorrFlowModel(EncoderConfig(width=0.25))
    model.centroids.copy_(torch.linspace(-40, 40, 32).view(16, 2))
    tex = torch.from_numpy(texture(48, 64, seed=3)).float().div(255).permute(2, 0, 1)
    clip = torch.stack([tex[:, :32, 2 * t:2 * t + 32] for t in range(3)])[None]  # 1,3,3,32,32
    return model, clip


def _loss(model, clip, mix):
    cfg = TrainConfig.cpu(crop=32, lab_mix=mix, colour_dropout=False, jitter_p=0.0)
    loss, _ = clip_loss(model.encoder, clip, model.centroids, cfg, 1.0,
                        torch.Generator().manual_seed(0))
    return loss


def test_mixture_matches_colour_and_still_trains_the_encoder(texture):
    model, clip = _setup(texture)
    pure = _loss(model, clip, 0.0)
    mixed = _loss(model, clip, 0.5)
    # an untrained encoder copies colours badly; the Lab half of the mixture copies them well
    assert float(mixed) < float(pure)
    mixed.backward()
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_lab_mix_range_checked():
    with pytest.raises(InputError, match="lab_mix"):
        TrainConfig.cpu(lab_mix=1.0)
