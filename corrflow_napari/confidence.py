"""How sure the propagation is of each frame and object, read from its own soft labels.

Every measure maps a frame's soft labels ``(V, h, w)`` at feature resolution (channel 0
background, channel i object i; each cell sums to about 1) to one value per object in
[0, 1], higher = more likely right:

* ``soft_iou``: the IoU between the soft map and its own hard mask, a self-estimate of
  J (1 when the map is crisp, lower when it is blurred, 0 when the object wins no cell:
  its probability is spread out or gone);
* ``margin`` / ``entropy``: 1 - the mean uncertainty (|2p - 1|; binary entropy) over the
  cells where the object has probability >= 0.1;
* ``mass``: the object's probability mass over the mass it had on the keyframe(s) it
  was propagated from, ``min(r, 1/r)``: objects that shrink away (occlusion, drift into
  the background) or bleed into the background score low;
* ``agreement``: IoU of the hard masks of the forward and backward propagation between
  two keyframes (1 where only one side exists);
* products of these.

:data:`CONFIDENCE_MEASURE` is the one reported as the confidence; it was chosen by the
Spearman rank correlation with the true per-frame J on the dev sequences (README).
:class:`Recorder` collects them into a :class:`PropagationResult` as frames finish.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

MEASURES = ("soft_iou", "margin", "entropy", "mass", "agreement", "soft_iou*mass",
            "soft_iou*mass*agreement")
CONFIDENCE_MEASURE = "soft_iou*mass"
_EPS = 1e-6


def object_mass(values: torch.Tensor) -> torch.Tensor:
    """(V, h, w) soft labels -> (V-1,) probability mass of each object (cells)."""
    return values[1:].clamp(0, 1).sum(dim=(1, 2))


def drop_faint(values: torch.Tensor, min_mass: float) -> torch.Tensor:
    """(V, h, w) soft labels with object probabilities (channels 1..) below ``min_mass``
    set to 0 and given to the background (channel 0); in place, returned."""
    if min_mass <= 0 or values.shape[0] < 2:
        return values
    objects = values[1:]
    faint = objects < min_mass
    values[0] += (objects * faint).sum(0)
    objects.masked_fill_(faint, 0)
    return values


def argmax_channels(x: torch.Tensor) -> torch.Tensor:
    """(V, h, w) -> (h, w) int64: ``x.argmax(0)`` (first maximum wins ties) as a running
    comparison, an order of magnitude faster for a few channels than the reduction."""
    best = x[0]
    idx = torch.zeros(x.shape[1:], dtype=torch.int64, device=x.device)
    for v in range(1, x.shape[0]):
        idx.masked_fill_(x[v] > best, v)
        best = torch.maximum(best, x[v])
    return idx


def object_cells(values: torch.Tensor) -> torch.Tensor:
    """(V, h, w) -> (V-1, h, w) bool: where each object wins the argmax."""
    win = argmax_channels(values)
    return win[None] == torch.arange(1, values.shape[0], device=values.device)[:, None, None]


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-object IoU of (N, h, w) masks (bool or soft); 1 where both are empty."""
    a, b = a.float(), b.float()
    inter = torch.minimum(a, b).sum(dim=(1, 2))
    union = torch.maximum(a, b).sum(dim=(1, 2))
    return torch.where(union > _EPS, inter / union.clamp_min(_EPS), torch.ones_like(union))


def certainty_map(values: torch.Tensor) -> torch.Tensor:
    """(V, h, w) -> (h, w): top-1 minus top-2 probability of each cell (0 undecided,
    1 sure); used to weigh two sides in the ``confidence`` fusion."""
    if values.shape[0] < 2:
        return torch.ones(values.shape[1:], device=values.device)
    top = values.topk(2, dim=0).values
    return (top[0] - top[1]).clamp(0, 1)


def measures(values: torch.Tensor, ref_mass: torch.Tensor, forward: torch.Tensor | None = None,
             backward: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every candidate measure (see the module doc) of one frame, (N,) each in [0, 1].

    values: the frame's (fused) soft labels (V, h, w); ref_mass: (N,) the objects' mass
    on the keyframe(s) they came from (:func:`object_mass`; weighted like the fusion);
    forward/backward: each side's soft labels when the frame lies between two keyframes.
    """
    p = values[1:].clamp(0, 1)
    hard = object_cells(values)
    present = hard.flatten(1).any(1)
    out = {"soft_iou": torch.where(present, _iou(p, hard), torch.zeros_like(present,
                                                                          dtype=p.dtype))}
    near = (p >= 0.1) | hard
    n_near = near.sum(dim=(1, 2)).clamp_min(1)
    unsure = 1 - (2 * p - 1).abs()
    out["margin"] = 1 - (unsure * near).sum(dim=(1, 2)) / n_near
    q = p.clamp(_EPS, 1 - _EPS)
    ent = -(q * q.log2() + (1 - q) * (1 - q).log2())
    out["entropy"] = 1 - (ent * near).sum(dim=(1, 2)) / n_near
    mass = object_mass(values)
    ratio = (mass + _EPS) / (ref_mass.to(mass) + _EPS)
    out["mass"] = torch.minimum(ratio, 1 / ratio)
    if forward is not None and backward is not None:
        out["agreement"] = _iou(object_cells(forward), object_cells(backward))
    else:
        out["agreement"] = torch.ones_like(mass)
    out["soft_iou*mass"] = out["soft_iou"] * out["mass"]
    out["soft_iou*mass*agreement"] = out["soft_iou*mass"] * out["agreement"]
    return {k: v.clamp(0, 1) for k, v in out.items()}


def frame_confidence(values: torch.Tensor, ref_mass: torch.Tensor) -> float:
    """The :data:`CONFIDENCE_MEASURE` of one frame, mean over objects."""
    return float(measures(values, ref_mass)[CONFIDENCE_MEASURE].mean())


def fusion_weight(forward: torch.Tensor, backward: torch.Tensor, w_forward: float,
                  ref_masses: tuple[torch.Tensor, torch.Tensor]) -> float:
    """The forward side's weight for ``fusion="confidence"``: the distance weight times
    each side's own :func:`frame_confidence` (plus 0.05, so that distance decides when
    both sides are unsure), normalised. ref_masses: each side's keyframe mass."""
    wf = w_forward * (frame_confidence(forward, ref_masses[0]) + 0.05)
    wb = (1 - w_forward) * (frame_confidence(backward, ref_masses[1]) + 0.05)
    return wf / (wf + wb)


@dataclass
class PropagationResult:
    """What :func:`~corrflow_napari.propagation.propagate` returns.

    labels: (T, H, W) ids (None: not kept, see ``keep_labels``); confidence: (T,) in
    [0, 1] (NaN: frame not computed, 1.0: keyframe), the mean of object_confidence (T, N)
    over objects; object_ids: (N,) the object id of each column; measures: {name: (T,)}
    every candidate measure (:data:`MEASURES`, mean over objects), for evaluation.
    """

    labels: np.ndarray | None
    confidence: np.ndarray
    object_confidence: np.ndarray
    object_ids: np.ndarray
    measures: dict[str, np.ndarray] = field(default_factory=dict)


class Recorder:
    """Fills the per-frame, per-object confidences of a propagation run.

    seeds: {keyframe: (V, h, w) soft labels} (their masses are the references), followed
    by sub-cell channels when ``n_labels`` < their channels (:mod:`.sub_cell_labels`;
    only the first ``n_labels`` are read); ``keyframe(t)`` marks a keyframe (1.0),
    ``record(sides)`` a computed frame (a :class:`~corrflow_napari.propagation.FrameSides`)."""

    def __init__(self, t_total: int, seeds: dict[int, torch.Tensor],
                 n_labels: int | None = None):
        self.n = n_labels or next(iter(seeds.values())).shape[0]
        self.mass = {k: object_mass(v[:self.n]) for k, v in seeds.items()}
        n = self.n - 1
        self.objects = np.full((t_total, n), np.nan)
        self.measures = {m: np.full(t_total, np.nan) for m in MEASURES}

    def keyframe(self, t: int) -> None:
        self.objects[t] = 1.0
        for m in self.measures.values():
            m[t] = 1.0

    def ref_mass(self, sources: tuple[int | None, int | None], w_forward: float):
        """The keyframe mass a frame is compared with: its sources' masses weighted
        like the fusion."""
        fwd, bwd = sources
        if bwd is None:
            return self.mass[fwd]
        if fwd is None:
            return self.mass[bwd]
        return w_forward * self.mass[fwd] + (1 - w_forward) * self.mass[bwd]

    def __call__(self, sides) -> None:
        def labels(v):
            return None if v is None else v[:self.n]

        got = measures(labels(sides.values), self.ref_mass(sides.sources, sides.w_forward),
                       labels(sides.forward), labels(sides.backward))
        per_object = got[CONFIDENCE_MEASURE]        # one device-to-host copy per frame
        host = torch.cat([per_object, torch.stack([v.mean() for v in got.values()])]).cpu()
        self.objects[sides.t] = host[:len(per_object)].numpy()
        for name, v in zip(got, host[len(per_object):].tolist()):
            self.measures[name][sides.t] = v

    def result(self, labels: np.ndarray | None, object_ids: np.ndarray) -> PropagationResult:
        done = ~np.isnan(self.objects).any(axis=1)
        frame = np.full(len(self.objects), np.nan)
        if self.objects.shape[1]:
            frame[done] = self.objects[done].mean(axis=1)
        return PropagationResult(labels, frame, self.objects, np.asarray(object_ids),
                                 self.measures)
