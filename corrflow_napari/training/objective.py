"""The CorrFlow objective (``docs/corrflow-method.md``, Lai & Xie, BMVC 2019) and one
optimisation step.

* a training sample is a clip of 3 frames ``i, i+s, i+2s`` (:class:`~.data.ClipSampler`);
* the encoder sees the frames through the information bottleneck (colour dropout + a
  little jitter); the *targets* are the unaltered frames' Lab (a, b) colours quantised
  to the model's 16 K-means centroids (``model.centroids``);
* the values copied by the pointer are the one-hot class maps average-pooled by 4
  (soft class distributions at feature resolution); frame k is rebuilt from frame k-1
  through restricted attention (13x13 window, raw dot product, temperature 1);
* forward losses 0->1 and 1->2 (frame 1's values are its ground truth with probability
  p, else the model's own reconstruction: scheduled sampling, p = 0.9 -> 0.6 linearly);
  cycle losses 0->1->0 and 0->1->2->1->0 against frame 0;
* loss = 1.0 * sum(forward NLL) + 0.1 * sum(cycle NLL) of the x4 bilinearly upsampled
  class probabilities against the true class of every pixel;
* with ``config.lab_mix`` = m > 0 every copy is the mixture the model is used with at
  inference: (1 - m) x the learned attention + m x the Lab-colour baseline's attention
  (4x4-averaged Lab of the unaltered frames, -|d|^2 / 0.05), so the learned half is
  trained for what colour matching gets wrong.

Every frame is encoded once per step and its features are reused by all paths.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..model.attention import full_attention, restricted_attention
from ..model.colour import colour_dropout, colour_jitter, quantise_ab, rgb_to_lab
from ..model.features import CorrFlowModel, LabFeatures, lab_features
from .config import TrainConfig, lr_at, p_at


def _nll(recon: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """recon (B, K, h, w) class probabilities at feature resolution; target (B, H, W)."""
    up = F.interpolate(recon, scale_factor=4, mode="bilinear", align_corners=False)
    up = up[:, :, :target.shape[1], :target.shape[2]].contiguous()   # NLL2d backward needs it
    return F.nll_loss(torch.log(up.clamp(min=eps, max=1.0)), target)


def clip_loss(encoder: nn.Module, clip: torch.Tensor, centroids: torch.Tensor,
              config: TrainConfig, p_gt: float,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """The CorrFlow objective on a batch of 3-frame clips.

    clip: (B, 3, 3, H, W) RGB in [0, 1] (H, W multiples of 4) on the training device.
    Returns (loss, parts) where parts holds the float value of every term.
    """
    b, t, _, h, w = clip.shape
    if t != 3:
        raise ValueError(f"a training clip has 3 frames, got {t}")
    k = centroids.shape[0]
    with torch.no_grad():   # targets come from the unaltered frames
        cls = quantise_ab(rgb_to_lab(clip.flatten(0, 1)), centroids.to(clip))   # BT,H,W
        onehot = F.one_hot(cls, k).permute(0, 3, 1, 2).to(clip.dtype)
        soft = F.avg_pool2d(onehot, 4, 4, ceil_mode=True)                        # BT,K,h,w
        cls = cls.view(b, t, h, w)
        soft = soft.view(b, t, k, *soft.shape[-2:])
    x = clip   # jitter first (on [0, 1] frames), then dropout's channel rescaling
    if config.jitter_p > 0:
        x = colour_jitter(x, strength=0.1, p=config.jitter_p, generator=generator)
    if config.colour_dropout:
        x = colour_dropout(x, generator=generator)
    feats = encoder(x.flatten(0, 1))                                            # BT,C,h,w
    feats = feats.view(b, t, *feats.shape[1:])
    if feats.shape[-2:] != soft.shape[-2:]:
        raise ValueError(f"feature map {tuple(feats.shape[-2:])} does not match the pooled "
                         f"labels {tuple(soft.shape[-2:])}")

    lab = None
    if config.lab_mix > 0:
        with torch.no_grad():
            lab = lab_features(clip.flatten(0, 1)).view(b, t, 3, *feats.shape[-2:])

    def copy(q: int, r: int, values: torch.Tensor) -> torch.Tensor:
        """Rebuild frame q's class distribution by copying ``values`` from frame r."""
        if config.restricted:
            out = restricted_attention(feats[:, q], feats[:, r:r + 1], values[:, None],
                                       radius=config.radius, temperature=config.temperature)
        else:
            out = full_attention(feats[:, q], feats[:, r:r + 1], values[:, None],
                                 temperature=config.temperature)
        if lab is None:
            return out
        colour = restricted_attention(lab[:, q], lab[:, r:r + 1], values[:, None],
                                      radius=config.radius, metric=LabFeatures.inference.metric,
                                      temperature=LabFeatures.inference.temperature)
        return (1 - config.lab_mix) * out + config.lab_mix * colour

    eps = config.prob_eps
    parts: dict[str, float] = {}
    r1 = copy(1, 0, soft[:, 0])                                   # 0 -> 1
    l01 = _nll(r1, cls[:, 1], eps)
    if config.scheduled_sampling:
        use_gt = (torch.rand(b, generator=generator) < p_gt).to(clip.device)
        ref1 = torch.where(use_gt[:, None, None, None], soft[:, 1], r1)
    else:
        use_gt = torch.ones(b, dtype=torch.bool)
        ref1 = soft[:, 1]
    r2 = copy(2, 1, ref1)                                         # 1 -> 2
    l12 = _nll(r2, cls[:, 2], eps)
    forward = l01 + l12
    loss = config.forward_weight * forward
    parts.update(forward_01=float(l01.detach()), forward_12=float(l12.detach()),
                 gt_fraction=float(use_gt.float().mean()))
    if config.cycle:
        c0 = copy(0, 1, r1)                                       # 0 -> 1 -> 0
        l010 = _nll(c0, cls[:, 0], eps)
        chain2 = r2 if not bool(use_gt.any()) else copy(2, 1, r1)  # 0 -> 1 -> 2 (no GT)
        back1 = copy(1, 2, chain2)                                # ... -> 1
        back0 = copy(0, 1, back1)                                 # ... -> 0
        l01210 = _nll(back0, cls[:, 0], eps)
        cyc = l010 + l01210
        loss = loss + config.cycle_weight * cyc
        parts.update(cycle_010=float(l010.detach()), cycle_01210=float(l01210.detach()))
    parts["loss"] = float(loss.detach())
    return loss, parts


def set_bn_frozen(module: nn.Module, frozen: bool = True) -> None:
    """Put every BatchNorm layer in eval mode (running statistics neither used from the
    batch nor updated); affine weights stay trainable."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train(not frozen and module.training)


def train_step(model: CorrFlowModel, optimizer: torch.optim.Optimizer,
               clip: torch.Tensor | None, config: TrainConfig, step: int,
               generator: torch.Generator | None = None, encoder: nn.Module | None = None,
               p_gt: float | None = None, lr: float | None = None,
               extra_loss: Callable[[], tuple[torch.Tensor, dict]] | None = None) -> dict:
    """One optimisation step at 0-based ``step`` (lr and p follow their schedules unless
    given). ``encoder`` is the module to call (the DDP wrapper under torchrun); defaults to
    ``model.encoder``. ``extra_loss()`` -> (loss, parts): a further term added to the
    colour objective (fine-tuning's label term); with ``clip`` None it is the whole loss.
    Returns the loss parts plus ``lr`` and ``p_gt``."""
    encoder = encoder if encoder is not None else model.encoder
    lr = lr_at(step, config) if lr is None else lr
    p_gt = p_at(step, config) if p_gt is None else p_gt
    for g in optimizer.param_groups:
        g["lr"] = lr
    model.train()
    if config.frozen_bn:
        set_bn_frozen(model)
    optimizer.zero_grad(set_to_none=True)
    loss, parts = (clip_loss(encoder, clip, model.centroids, config, p_gt, generator)
                   if clip is not None else (0.0, {}))
    if extra_loss is not None:
        extra, extra_parts = extra_loss()
        loss = loss + extra
        parts.update(extra_parts, loss=float(loss.detach()))
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {float(loss)} at step {step}")
    loss.backward()
    optimizer.step()
    parts.update(lr=lr, p_gt=p_gt)
    return parts


def trained_parameters(model: CorrFlowModel, config: TrainConfig) -> list[nn.Parameter]:
    """The encoder parameters ``config.params`` trains: all of them, or ("norm") only the
    one-dimensional ones (normalisation layers' scales and shifts, convolution biases)."""
    params = list(model.encoder.parameters())
    return params if config.params == "all" else [p for p in params if p.ndim == 1]


def make_optimizer(model: CorrFlowModel, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam over :func:`trained_parameters` (the centroids are fitted, not trained)."""
    return torch.optim.Adam(trained_parameters(model, config), lr=config.lr,
                            betas=config.betas)
