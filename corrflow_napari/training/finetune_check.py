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

* The guard, which must not get worse. Round trips reward features that keep every
  pixel in place (whatever goes out comes back): label-aware fine-tuning raised the mask
  round trip on nearly every dev sequence, also where J&F fell by 3-5.
  - With painted keyframes (:class:`PropagationCrispness`): the keyframes propagated
    through the video (at most :data:`MAX_PROPAGATED` frames, evenly spaced), as the user
    will propagate them; the score is how crisp the propagated masks are (the mean
    ``soft_iou`` of :mod:`~corrflow_napari.confidence`: the soft map against its own
    hard mask, 0 where an object is lost). Fine-tuning that blurs the masks lowers it.
    Over 27 measured label-aware fine-tunes it refused the weights in 5 of the 6 runs
    that lost more than 1 J&F; it kept one that lost 3.9 (README).
  - Without labels (:class:`ColourForward`): colours of frame t + s predicted from frame
    t, at a few places inside the held-out end. (With labels it fell in 48 of 49 runs,
    also where J&F rose by 2-5: label training trades colour detail for the objects.)

Scores are in [0, 1]; higher is better.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from ..io.frame_subset import FrameSubset
from ..model.colour import quantise_ab, rgb_to_lab
from ..model.features import CorrFlowModel, frames_to_tensor
from ..propagation import (
    FrameEncoder,
    PropagationSettings,
    downsample_probs,
    propagate,
    resize_nearest,
    scaled_size,
)
from ..working_resolution import working_scale
from .label_objective import LabelTerm, attend_as_inference, round_trip
from .pseudo_keyframes import PropagatedFrames

MAX_KEYFRAMES = 3     # keyframes the mask check uses (the first ones)
MAX_PROPAGATED = 60   # frames the crispness guard propagates through (evenly spaced)


def _check_settings(settings: PropagationSettings | None) -> PropagationSettings:
    """The propagation settings with the label term's window (the paper's M = 6): the
    checks' rules were measured with it, and training sees only that window."""
    return dataclasses.replace(settings or PropagationSettings(), radius=LabelTerm.radius)


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
        self.settings = _check_settings(settings)
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


def _colour_probs(model: CorrFlowModel, frame: np.ndarray, size: tuple[int, int],
                  feat_hw: tuple[int, int]) -> torch.Tensor:
    """(H, W, 3) uint8 frame, resized to ``size`` (the working resolution) -> (K, h, w)
    shares of its quantised (a, b) colour classes per feature cell (CPU)."""
    x = frames_to_tensor(np.asarray(frame)[None], "cpu")
    if size != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                          antialias=True).clamp_(0, 1)
    cent = model.centroids.detach().cpu()
    cls = quantise_ab(rgb_to_lab(x), cent)[0]
    return downsample_probs(F.one_hot(cls, cent.shape[0]).permute(2, 0, 1), feat_hw)


class ColourRoundTrip:
    """Colour classes of held-out frames sent along and back (see the module docstring).

    ``held_out``: the frame indices left out of training (at least 3, in order)."""

    name = "colours of held-out frames sent to nearby frames and back (overlap)"

    def __init__(self, frames, held_out: list[int], step: int,
                 settings: PropagationSettings | None = None):
        self.frames = frames
        self.settings = _check_settings(settings)
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
        size = scaled_size(int(self.frames.shape[1]), int(self.frames.shape[2]), self.scale)
        target = _colour_probs(model, self.frames[self.chain[0]], size,
                               feats[0].shape[-2:]).to(feats[0].device)
        out = [float(torch.minimum(b, target).sum(0).mean())
               for b in _round_trip(model, feats, target, self.settings)]
        return float(np.mean(out))


class ColourForward:
    """Colours of frame t + s predicted from frame t (forward, no way back), at ``pairs``
    places spread over the video: the colour distribution of t's pixels copied through
    the inference attention onto t + s, scored by its overlap with t + s's own colour
    classes. Unlike a round trip it cannot be satisfied by features that keep every
    pixel where it was: where the scene moves, a copy that stays put predicts the wrong
    colours."""

    name = "colours of frames predicted from the frame before (overlap)"

    def __init__(self, frames, step: int, pairs: int = 4, span: tuple[int, int] | None = None,
                 settings: PropagationSettings | None = None):
        self.frames = frames
        self.settings = _check_settings(settings)
        h, w = int(frames.shape[1]), int(frames.shape[2])
        self.scale, _ = working_scale(self.settings, h, w)
        self.size = scaled_size(h, w, self.scale)
        first, last = span if span is not None else (0, len(frames) - 1)
        s = max(1, min(step, last - first))
        starts = sorted({int(round(x)) for x in np.linspace(first, last - s, pairs)}) \
            if last - first >= 1 else []
        self.pairs = [(t, t + s) for t in starts]

    def __bool__(self) -> bool:
        return bool(self.pairs)

    @torch.no_grad()
    def score(self, model: CorrFlowModel) -> float:
        """Mean overlap sum_k min(p_k, q_k) of predicted and true colour distributions."""
        encode = FrameEncoder(model, self.frames, self.scale)
        out = []
        for a, b in self.pairs:
            fa, fb = encode(a), encode(b)
            va, vb = (_colour_probs(model, self.frames[t], self.size,
                                    fa.shape[-2:]).to(fa.device) for t in (a, b))
            pred = attend_as_inference(model, fb[None], fa[None], va[None],
                                       self.settings.radius, self.settings.topk)[0]
            out.append(float(torch.minimum(pred, vb).sum(0).mean()))
        return float(np.mean(out))


class PropagationCrispness:
    """The painted keyframes propagated through the video (the default settings, at most
    ``max_frames`` frames: every s-th frame and the keyframes), scored by the mean
    ``soft_iou`` of the propagated frames (see the module docstring); ``excluded`` frames
    (the pseudo-keyframes fine-tuning trains on) are left out of the mean."""

    name = "painted masks propagated through the video (crispness)"

    def __init__(self, frames, keyframes: dict, settings: PropagationSettings | None = None,
                 max_frames: int = MAX_PROPAGATED):
        n, h, w = len(frames), int(frames.shape[1]), int(frames.shape[2])
        stride = max(1, math.ceil(n / max(2, max_frames)))
        self.times = sorted(set(range(0, n, stride)) | {int(t) for t in keyframes})
        self.frames = FrameSubset(frames, self.times)
        self.keyframes = {self.times.index(int(t)): np.asarray(m)
                          for t, m in keyframes.items()}
        self.settings = settings
        self.full_hw = (h, w)
        scale, _ = working_scale(settings or PropagationSettings(), h, w, keyframes)
        self.label_size = scaled_size(h, w, scale)
        self.excluded: set[int] = set()

    def __bool__(self) -> bool:
        return len(self.frames) > len(self.keyframes)

    @torch.no_grad()
    def propagate(self, model: CorrFlowModel, keep_labels: bool = True) -> PropagatedFrames:
        """The propagation the score is taken from, with its measures and (``keep_labels``)
        each frame's labels at the working resolution (for :mod:`.pseudo_keyframes`)."""
        labels: dict[int, np.ndarray] = {}

        def keep(i: int, lab: np.ndarray) -> None:
            labels[self.times[i]] = resize_nearest(lab, self.label_size)

        res = propagate(model, self.frames, self.keyframes, settings=self.settings,
                        keep_labels=False, on_frame=keep if keep_labels else None)
        return PropagatedFrames(self.times, res.confidence, self.full_hw, labels,
                                soft_iou=res.measures["soft_iou"])

    def crispness(self, seen: PropagatedFrames) -> float:
        """Mean soft IoU of the propagated frames that are neither keyframes nor excluded."""
        skip = set(self.keyframes) | {i for i, t in enumerate(self.times) if t in self.excluded}
        return float(np.nanmean(np.delete(seen.soft_iou, sorted(skip))))

    def score(self, model: CorrFlowModel) -> float:
        """Mean soft IoU of the propagated (non-key) frames' masks with their own argmax."""
        return self.crispness(self.propagate(model, keep_labels=False))
