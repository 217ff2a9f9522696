"""The label term of fine-tuning: the user's painted keyframes, reconstructed through the
attention the model is used with at inference.

One-shot video segmentation adapts a network to the first frame's mask by training on
augmented copies of that frame. Here the "network output" is a propagation, so a sample
is a PAIR: a reference and a target copy of a keyframe (random crop, zoom, small
rotation, flip, independent colour jitter; the target's geometry differs from the
reference's by a small random shift / rotation / rescale, i.e. a small "motion" within
the attention window). The keyframe's mask is copied from the reference to the target
through the restricted attention with the model's inference settings (normalised
features with Lab colour appended, its metric and temperature, the Lab-colour mixture,
top-k) and scored by per-pixel cross-entropy against the target copy's (soft, warped)
mask. With several keyframes, a pair may also be two keyframes in the same crop window:
keyframe a's mask propagated to keyframe b must give b's mask.

The mask cycle (as test-time training of matching-based video segmentation does,
"mask cycle consistency"): the keyframe's mask is carried through two real frames near
it and back, k -> t1 -> k and k -> t1 -> t2 -> t1 -> k, in one crop window (the real
motion inside it), and must come back as painted. Frames the held-out check uses are
never visited (``held_out``).

Crops are taken at the working resolution propagation will use (``working_scale`` of
the default :class:`~corrflow_napari.propagation.PropagationSettings`), so objects have
the size they will have when propagated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..feature_cache import resize_rgb8
from ..keyframe_masks import check_keyframes
from ..model.attention import restricted_attention
from ..model.colour import colour_jitter
from ..model.features import CorrFlowModel, lab_features
from ..propagation import PropagationSettings, downsample_probs, resize_nearest, scaled_size
from ..working_resolution import working_scale


@dataclass(frozen=True)
class LabelTerm:
    """Settings of the label term (defaults chosen by measurement:
    docs/measurements-training.md)."""

    weight: float = 1.0                  # weight of the whole label term (colour term: 1)
    colour_batch: int | None = 0         # colour clips per step with labels (None: the
    #                                      TrainConfig's batch; 0: no colour term)
    copies_batch: int = 0                # augmented copies of a keyframe per step
    between_batch: int = 1               # keyframe a -> b pairs per step (several keyframes)
    cycle_batch: int = 2                 # mask cycles through real frames per step
    cycle_weight: float = 1.0            # cycle loss weight (the pairs have weight 1)
    cycle_span: int = 12                 # cycles visit frames at most this far from a keyframe
    pseudo_keyframes: int = 3            # confident propagated frames trained on as if painted
    crop: int = 128                      # square crop (multiple of 4), working-res pixels
    zoom: tuple[float, float] = (0.8, 1.25)  # log-uniform zoom of the reference crop
    max_shift: float = 8.0               # copies: target vs reference shift (crop pixels) ...
    max_rotate: float = 8.0              # ... rotation (degrees) ...
    max_rescale: float = 0.08            # ... and relative rescale
    jitter: float = 0.15                 # brightness / contrast / saturation, each image
    object_focus: float = 0.75           # P(the crop is centred on a painted pixel)
    topk: int | None = 10                # as propagation (PropagationSettings.topk)
    radius: int = 6                      # attention window M (the paper's; propagation: 8)
    prob_eps: float = 1e-6

    def __post_init__(self):
        if self.crop < 16 or self.crop % 4:
            raise InputError(f"label crop {self.crop} must be a multiple of 4 and >= 16.")
        batches = (self.copies_batch, self.between_batch, self.cycle_batch)
        if min(batches) < 0 or sum(batches) < 1 or self.weight < 0:
            raise InputError("the label term needs a batch >= 1 and a weight >= 0.")


class LabelPairs(NamedTuple):
    """A batch of (reference, target) copies: images (B, 3, S, S) in [0, 1] and soft
    labels (B, K, S, S) summing to 1 over the K classes (0 = background)."""

    ref: torch.Tensor
    ref_labels: torch.Tensor
    tgt: torch.Tensor
    tgt_labels: torch.Tensor


class LabelCycles(NamedTuple):
    """A batch of mask cycles: images (B, 3, 3, S, S) of the keyframe and two real frames
    (k, t1, t2) in one crop window, and the keyframe's soft labels (B, K, S, S)."""

    images: torch.Tensor
    labels: torch.Tensor


def _check_keyframes(frames, keyframes: dict) -> dict[int, np.ndarray]:
    """:func:`~corrflow_napari.keyframe_masks.check_keyframes`, and each mask must hold an
    object (an empty painted frame teaches nothing)."""
    out = check_keyframes(keyframes, len(frames), int(frames.shape[1]), int(frames.shape[2]))
    for t, m in sorted(out.items()):
        if not m.any():
            raise InputError(f"the mask of keyframe {t} has no object (all 0).")
    return dict(sorted(out.items()))


class KeyframeSet:
    """The painted keyframes (and the frames near them) at the working resolution, ready
    for :meth:`sample` (augmented copies) and :meth:`sample_cycles` (mask cycles).

    frames: the video ((T, H, W, 3) uint8 array or Video); keyframes: {t: (H, W) ids};
    held_out: frames the cycles must not visit (the held-out check's).
    ``ids`` lists the object ids (class k <-> id ``ids[k]``, class 0 = background).
    """

    def __init__(self, frames, keyframes: dict, term: LabelTerm | None = None,
                 settings: PropagationSettings | None = None, held_out=()):
        self.term = term or LabelTerm()
        keyframes = _check_keyframes(frames, keyframes)
        self.video, self.n_frames = frames, len(frames)
        self.full_hw = (int(frames.shape[1]), int(frames.shape[2]))
        self.scale, _ = working_scale(settings or PropagationSettings(), *self.full_hw,
                                      keyframes)
        self.size = scaled_size(*self.full_hw, self.scale)
        self.ids = np.unique(np.concatenate([[0]] + [np.unique(m) for m in keyframes.values()]))
        self.times = sorted(keyframes)
        self._cache: dict[int, torch.Tensor] = {}
        self.images = torch.stack([self.frame(t) for t in self.times])     # N, 3, h, w
        self.labels = torch.stack([torch.from_numpy(np.searchsorted(
            self.ids, resize_nearest(keyframes[t], self.size)).astype(np.int64))
            for t in self.times])                                          # N, h, w
        self.painted = [torch.nonzero(lab > 0) for lab in self.labels]    # (n, 2) y, x
        skip = set(int(t) for t in held_out) | set(self.times)
        span = self.term.cycle_span
        self.neighbours = [[[t for t in range(k + d, k + d * (span + 1), d)
                             if 0 <= t < self.n_frames and t not in skip] for d in (1, -1)]
                           for k in self.times]

    @property
    def n_classes(self) -> int:
        return len(self.ids)

    @property
    def has_cycles(self) -> bool:
        """Whether some keyframe has two frames near it to cycle through."""
        return any(len(c) >= 2 for sides in self.neighbours for c in sides)

    def frame(self, t: int) -> torch.Tensor:
        """Frame ``t`` at the working resolution, (3, h, w) float in [0, 1], resized as
        propagation resizes it (uint8 kept in a small cache)."""
        x = self._cache.get(t)
        if x is None:
            from ..io import to_rgb8
            x = torch.from_numpy(np.ascontiguousarray(to_rgb8(self.video[t], scale=(0, 255))))
            if self.size != self.full_hw:
                x = resize_rgb8(x[None], self.size)[0]
            x = x.permute(2, 0, 1)
            if len(self._cache) >= 64:
                self._cache.clear()
            self._cache[t] = x
        return x.float().div(255)

    def _theta(self, cy, cx, side, angle, flip) -> torch.Tensor:
        """(2, 3) affine for grid_sample: a ``side``-pixel square centred at (cy, cx),
        rotated by ``angle`` (radians), mirrored when ``flip``."""
        h, w = self.size
        r = side / 2
        c, s = math.cos(angle), math.sin(angle)
        fx = -1.0 if flip else 1.0
        return torch.tensor([[2 * r / w * c * fx, -2 * r / w * s, 2 * cx / w - 1],
                             [2 * r / h * s * fx, 2 * r / h * c, 2 * cy / h - 1]],
                            dtype=torch.float32)

    def _window(self, a: int, rng: np.random.Generator) -> tuple[float, float, float, float,
                                                                   bool]:
        """A random crop window (cy, cx, side, angle, flip) on keyframe ``a``."""
        p = self.term
        pts = self.painted[a]
        if len(pts) and rng.random() < p.object_focus:
            cy, cx = (pts[int(rng.integers(len(pts)))].float() + 0.5).tolist()
        else:
            cy, cx = rng.uniform(0, self.size[0]), rng.uniform(0, self.size[1])
        side = p.crop / math.exp(rng.uniform(*np.log(p.zoom)))
        angle = math.radians(rng.uniform(-p.max_rotate, p.max_rotate))
        return cy, cx, side, angle, bool(rng.random() < 0.5)

    def _grid(self, thetas: list) -> torch.Tensor:
        crop = self.term.crop
        return F.affine_grid(torch.stack(thetas), (len(thetas), 3, crop, crop),
                             align_corners=False)

    def _warp_images(self, images, thetas, generator) -> torch.Tensor:
        """(n, 3, h, w) -> (n, 3, S, S) crops, colour-jittered independently."""
        img = F.grid_sample(images, self._grid(thetas), mode="bilinear",
                            padding_mode="reflection", align_corners=False)
        if self.term.jitter > 0:
            img = colour_jitter(img[:, None], strength=self.term.jitter, p=1.0,
                                generator=generator)[:, 0]
        return img

    def _warp_labels(self, labels, thetas) -> torch.Tensor:
        """(n, h, w) classes -> (n, K, S, S) soft labels."""
        onehot = F.one_hot(labels, self.n_classes).permute(0, 3, 1, 2).float()
        return F.grid_sample(onehot, self._grid(thetas), mode="bilinear",
                             padding_mode="reflection", align_corners=False)

    def sample(self, batch: int, rng: np.random.Generator,
               generator: torch.Generator | None = None,
               between: bool = False) -> LabelPairs:
        """``batch`` (reference, target) pairs: augmented copies of one keyframe, or with
        ``between`` two different keyframes in one window (needs several keyframes).
        All randomness comes from ``rng`` / ``generator``."""
        p = self.term
        if between and len(self.times) < 2:
            raise InputError("pairs between keyframes need at least two keyframes.")
        thetas, srcs = [], []
        for _ in range(batch):
            a = int(rng.integers(len(self.times)))
            b = a
            if between:
                b = int(rng.choice([i for i in range(len(self.times)) if i != a]))
            cy, cx, side, angle, flip = self._window(a, rng)
            thetas.append(self._theta(cy, cx, side, angle, flip))
            if b == a:   # same keyframe: a small motion between the two copies
                k = side / p.crop
                cy += k * rng.uniform(-p.max_shift, p.max_shift)
                cx += k * rng.uniform(-p.max_shift, p.max_shift)
                side *= math.exp(rng.uniform(-p.max_rescale, p.max_rescale))
                angle += math.radians(rng.uniform(-p.max_rotate, p.max_rotate))
            thetas.append(self._theta(cy, cx, side, angle, flip))
            srcs += [a, b]
        src = torch.tensor(srcs)
        img = self._warp_images(self.images[src], thetas, generator)
        lab = self._warp_labels(self.labels[src], thetas)
        return LabelPairs(img[0::2], lab[0::2], img[1::2], lab[1::2])

    def sample_cycles(self, batch: int, rng: np.random.Generator,
                      generator: torch.Generator | None = None) -> LabelCycles:
        """``batch`` mask cycles (keyframe, nearer frame, farther frame), one crop window
        each; only keyframes with two usable frames on one side are drawn."""
        usable = [(a, c) for a, sides in enumerate(self.neighbours) for c in sides
                  if len(c) >= 2]
        if not usable:
            raise InputError("no frames near the keyframes to cycle through.")
        images, labels, thetas = [], [], []
        for _ in range(batch):
            a, cand = usable[int(rng.integers(len(usable)))]
            i, j = sorted(rng.choice(len(cand), size=2, replace=False).tolist())
            theta = self._theta(*self._window(a, rng))
            images += [self.images[a], self.frame(cand[i]), self.frame(cand[j])]
            labels.append(self.labels[a])
            thetas += [theta] * 3
        img = self._warp_images(torch.stack(images), thetas, generator)
        lab = self._warp_labels(torch.stack(labels), thetas[0::3])
        return LabelCycles(img.view(batch, 3, *img.shape[1:]), lab)


def inference_features(model: CorrFlowModel, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, C, H/4, W/4): the features ``model.encode`` gives at
    inference (L2-normalised, Lab colour appended, per its ``inference``), differentiable.
    With ``frame_bn`` each image is encoded alone, so BatchNorm (in training mode) uses
    that image's statistics, as inference does."""
    s = model.inference
    if s.frame_bn and model.training:
        f = torch.cat([model.encoder(x[i:i + 1]) for i in range(x.shape[0])])
    else:
        f = model.encoder(x)
    f = f.float()
    if s.normalize:
        f = F.normalize(f, dim=1)
    if s.lab_weight > 0:
        f = torch.cat([f, s.lab_weight * lab_features(x)[:, :, :f.shape[2], :f.shape[3]]], 1)
    return f


def attend_as_inference(model: CorrFlowModel, query: torch.Tensor, ref: torch.Tensor,
                        values: torch.Tensor, radius: int = 6,
                        topk: int | None = 10) -> torch.Tensor:
    """Copy ``values`` (B, V, h, w) from one reference's features ``ref`` (B, C, h, w) to
    ``query`` (B, C, h, w) as propagation does: the weighted sum over the model's
    affinity groups (learned / Lab-colour mixture) of the restricted attention."""
    out = 0
    for g in model.affinity_groups():
        out = out + g.weight * restricted_attention(
            query[:, g.start:g.stop], ref[:, None, g.start:g.stop], values[:, None],
            radius=radius, temperature=g.temperature, topk=topk, metric=g.metric)
    return out


def round_trip(model: CorrFlowModel, feats: list[torch.Tensor], values: torch.Tensor,
               radius: int = 6, topk: int | None = 10) -> list[torch.Tensor]:
    """Values (B, V, h, w) of frames feats[0] carried forward along ``feats`` (each
    (B, C, h, w)) and back to feats[0] after every step out: with 3 frames, 0->1->0 and
    0->1->2->1->0. Returns the returned (B, V, h, w) maps, one per length."""
    def copy(q, r, v):
        return attend_as_inference(model, feats[q], feats[r], v, radius, topk)
    out, fwd = [], values
    for i in range(1, len(feats)):
        fwd = copy(i, i - 1, fwd)
        back = fwd
        for j in range(i - 1, -1, -1):
            back = copy(j, j + 1, back)
        out.append(back)
    return out


def soft_cross_entropy(probs: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean per-pixel cross-entropy of feature-resolution class ``probs`` (B, K, h, w),
    upsampled x4 (bilinear), against soft ``target`` labels (B, K, H, W)."""
    up = F.interpolate(probs, scale_factor=4, mode="bilinear", align_corners=False)
    up = up[:, :, :target.shape[2], :target.shape[3]]
    return -(target * torch.log(up.clamp(min=eps, max=1.0))).sum(1).mean()


def _pool(labels: torch.Tensor, hw) -> torch.Tensor:
    """(B, K, H, W) soft labels -> (B, K, h, w) 4x4 averages (feature resolution), as
    propagation downsamples keyframe labels."""
    return downsample_probs(labels.flatten(0, 1), hw).view(*labels.shape[:2], *hw)


def pairs_loss(model: CorrFlowModel, pairs: LabelPairs, term: LabelTerm) -> torch.Tensor:
    """Cross-entropy of the targets' labels propagated from the references."""
    b = pairs.ref.shape[0]
    feats = inference_features(model, torch.cat([pairs.ref, pairs.tgt]))
    values = _pool(pairs.ref_labels, feats.shape[-2:])
    pred = attend_as_inference(model, feats[b:], feats[:b], values, term.radius, term.topk)
    return soft_cross_entropy(pred, pairs.tgt_labels, term.prob_eps)


def cycle_loss(model: CorrFlowModel, cycles: LabelCycles, term: LabelTerm) -> torch.Tensor:
    """Summed cross-entropy of the keyframe labels after k->t1->k and k->t1->t2->t1->k."""
    b = cycles.images.shape[0]
    feats = inference_features(model, cycles.images.flatten(0, 1))
    feats = feats.view(b, 3, *feats.shape[1:])
    values = _pool(cycles.labels, feats.shape[-2:])
    backs = round_trip(model, [feats[:, i] for i in range(3)], values, term.radius, term.topk)
    return sum(soft_cross_entropy(back, cycles.labels, term.prob_eps) for back in backs)


def label_loss(model: CorrFlowModel, keyframes: KeyframeSet, rng: np.random.Generator,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """The label term for one step, sampled from ``keyframes``: ``term.weight`` x (pairs
    + cycle_weight x cycles), where the pairs are augmented copies and, with several
    keyframes, keyframe-to-keyframe pairs (one mean cross-entropy over all of them);
    without frames to cycle through, copies stand in for the cycles. Returns (loss,
    {"label_pairs", "label_cycle"} values, those computed)."""
    term = keyframes.term
    n_copies = term.copies_batch
    if not keyframes.has_cycles:
        n_copies = max(n_copies, term.cycle_batch)
    n_between = term.between_batch if len(keyframes.times) > 1 else 0
    if n_copies + n_between == 0 and not keyframes.has_cycles:
        n_copies = 1
    loss, parts = 0.0, {}
    pairs = []
    if n_copies:
        pairs.append(keyframes.sample(n_copies, rng, generator))
    if n_between:
        pairs.append(keyframes.sample(n_between, rng, generator, between=True))
    if pairs:
        batch = LabelPairs(*(torch.cat(x) for x in zip(*pairs)))
        lp = pairs_loss(model, batch, term)
        loss, parts["label_pairs"] = lp, float(lp.detach())
    if term.cycle_batch and keyframes.has_cycles:
        ly = cycle_loss(model, keyframes.sample_cycles(term.cycle_batch, rng, generator), term)
        loss, parts["label_cycle"] = loss + term.cycle_weight * ly, float(ly.detach())
    return term.weight * loss, parts
