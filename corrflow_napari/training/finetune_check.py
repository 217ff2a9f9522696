"""The held-out check of fine-tuning: a score measured on the real video with the model as
propagation uses it, before and after fine-tuning; fine-tuning keeps its result only when
the score improves (:func:`~.finetune.finetune`).

* With painted keyframes (:class:`MaskRoundTrip`): each keyframe's mask is propagated to
  real frames after it (``k + s`` and ``k + 2s``) and back to the keyframe, with the
  inference settings (working resolution, mixture, top-k); the score is the mean soft
  Jaccard of the returned mask with the painted one, over objects. The label term never
  sees these frames (it trains on copies of the keyframes), so this is held out.
* Without labels (:class:`ColourRoundTrip`): the same round trip with the quantised
  (a, b) colour classes of held-out frames (the end of the video, left out of the
  colour term's clips) as the values; the score is their mean overlap.

Scores are in [0, 1]; higher is better.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..model.colour import quantise_ab, rgb_to_lab
from ..model.features import CorrFlowModel, frames_to_tensor
from ..propagation import (
    FrameEncoder,
    PropagationSettings,
    downsample_probs,
    resize_nearest,
    scaled_size,
)
from ..working_resolution import working_scale
from .label_objective import round_trip

MAX_KEYFRAMES = 3     # keyframes the mask check uses (the first ones)


def _round_trip(model, feats: list[torch.Tensor], values: torch.Tensor,
                settings: PropagationSettings) -> list[torch.Tensor]:
    """:func:`round_trip` of one frame's (V, h, w) values along (C, h, w) features."""
    backs = round_trip(model, [f[None] for f in feats], values[None], settings.radius,
                       settings.topk)
    return [b[0] for b in backs]


def _check_frames(k: int, step: int, n: int) -> list[int]:
    """k, k + s, k + 2s (or backwards when the video ends first; fewer near both ends)."""
    fwd = [t for t in (k, k + step, k + 2 * step) if t < n]
    bwd = [t for t in (k, k - step, k - 2 * step) if t >= 0]
    return fwd if len(fwd) >= len(bwd) else bwd


class MaskRoundTrip:
    """Keyframe masks sent to the frames after them and back (see the module docstring)."""

    name = "painted masks sent to nearby frames and back (soft J)"

    def __init__(self, frames, keyframes: dict, step: int,
                 settings: PropagationSettings | None = None):
        self.frames = frames
        self.settings = settings or PropagationSettings()
        h, w = int(frames.shape[1]), int(frames.shape[2])
        self.scale, _ = working_scale(self.settings, h, w, keyframes)
        size = scaled_size(h, w, self.scale)
        n = len(frames)
        self.chains, self.targets = [], []
        for k in sorted(keyframes)[:MAX_KEYFRAMES]:
            chain = _check_frames(k, max(1, step), n)
            if len(chain) < 2:
                continue
            ids = np.unique(keyframes[k])
            cls = np.searchsorted(ids, resize_nearest(np.asarray(keyframes[k]), size))
            onehot = F.one_hot(torch.from_numpy(cls.astype(np.int64)), len(ids))
            fh, fw = (size[0] + 3) // 4, (size[1] + 3) // 4
            self.targets.append(downsample_probs(onehot.permute(2, 0, 1), (fh, fw)))
            self.chains.append(chain)

    def __bool__(self) -> bool:
        return bool(self.chains)

    @property
    def frames_used(self) -> set[int]:
        """The frames the check visits besides the keyframes (held out of training)."""
        return {t for chain in self.chains for t in chain[1:]}

    @torch.no_grad()
    def score(self, model: CorrFlowModel) -> float:
        """Mean soft Jaccard (objects only) of the masks returned to their keyframes."""
        encode = FrameEncoder(model, self.frames, self.scale)
        cache: dict[int, torch.Tensor] = {}
        scores = []
        for chain, target in zip(self.chains, self.targets):
            for t in chain:
                if t not in cache:
                    cache[t] = encode(t)
            feats = [cache[t] for t in chain]
            target = target.to(feats[0].device)
            for back in _round_trip(model, feats, target, self.settings):
                inter = torch.minimum(back, target)[1:].sum((1, 2))
                union = torch.maximum(back, target)[1:].sum((1, 2))
                scores.append(float((inter / union.clamp(min=1e-6)).mean()))
        return float(np.mean(scores))


class ColourRoundTrip:
    """Colour classes of held-out frames sent along and back (see the module docstring).

    ``held_out``: the frame indices left out of training (at least 3, in order)."""

    name = "colours of held-out frames sent to nearby frames and back (overlap)"

    def __init__(self, frames, held_out: list[int], step: int,
                 settings: PropagationSettings | None = None):
        self.frames = frames
        self.settings = settings or PropagationSettings()
        h, w = int(frames.shape[1]), int(frames.shape[2])
        self.scale, _ = working_scale(self.settings, h, w)
        step = max(1, min(step, (len(held_out) - 1) // 2))
        self.chain = [held_out[0], held_out[step], held_out[2 * step]] \
            if len(held_out) >= 3 else []

    def __bool__(self) -> bool:
        return bool(self.chain)

    @torch.no_grad()
    def score(self, model: CorrFlowModel) -> float:
        """Mean overlap sum_k min(p_k, t_k) of the returned colour distributions."""
        encode = FrameEncoder(model, self.frames, self.scale)
        feats = [encode(t) for t in self.chain]
        h, w = scaled_size(int(self.frames.shape[1]), int(self.frames.shape[2]), self.scale)
        x = frames_to_tensor(np.asarray(self.frames[self.chain[0]])[None], "cpu")
        if (h, w) != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                              antialias=True).clamp_(0, 1)
        cent = model.centroids.detach().cpu()
        cls = quantise_ab(rgb_to_lab(x), cent)[0]
        onehot = F.one_hot(cls, cent.shape[0]).permute(2, 0, 1)
        target = downsample_probs(onehot, feats[0].shape[-2:]).to(feats[0].device)
        out = [float(torch.minimum(b, target).sum(0).mean())
               for b in _round_trip(model, feats, target, self.settings)]
        return float(np.mean(out))
