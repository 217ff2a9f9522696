"""References moved by whole feature cells.

The restricted attention only looks within M feature cells of the same position in every
reference. A keyframe many frames back stops helping once its object has moved more
than M cells (24 px at the working resolution): the window shows background there. So
masks also match a copy of the keyframe whose features and labels are moved by each
object's displacement since the keyframe, estimated from the chain's most recent labels
(the centroid of the cells the object wins there against the keyframe's): the window
around each target position then shows the keyframe's object where it is now, and an
object that was hidden is found again near where it was last seen (a coarse
localisation in the spirit of MAST, Lai et al. 2020, by translation only). Objects that
moved alike share one moved copy. Point tracking moves its references with
:func:`shift_cells` too (its ``motion`` setting).
"""
from __future__ import annotations

import torch

from .confidence import object_cells

STEP = 2              # shifts are rounded to this many cells (fewer distinct copies to tile)
MIN_CELLS_RATIO = 0.25  # an object with fewer cells than this x its keyframe's is "lost"
MAX_MOVED = 2         # moved keyframe copies per target frame at most


def shift_cells(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(..., h, w) moved by (dy, dx) cells: out[y + dy, x + dx] = x[y, x]; zeros enter."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _centroids(cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, h, w) bool -> (N,) y, (N,) x centroids (cells) and (N,) cell counts."""
    m = cells.float()
    n = m.sum((1, 2))
    ys = torch.arange(m.shape[1], dtype=m.dtype, device=m.device)
    xs = torch.arange(m.shape[2], dtype=m.dtype, device=m.device)
    safe = n.clamp_min(1)
    return (m.sum(2) * ys).sum(1) / safe, (m.sum(1) * xs).sum(1) / safe, n


def object_shifts(key_values: torch.Tensor, now_values: torch.Tensor,
                  last: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """{object channel: (dy, dx)} in cells (multiples of :data:`STEP`) moving each object
    of ``key_values`` (V, h, w) onto its cells in ``now_values`` (V, h, w); channel 0 is
    the background. An object with (almost) no cells now keeps its entry in ``last``
    (where it was last seen; (0, 0) at first), so a hidden object is looked for there.
    ``last`` is updated."""
    # one device-to-host copy per call (on a GPU every read of a tensor waits for it)
    ky, kx, kn = _centroids(object_cells(key_values))
    ny, nx, nn = _centroids(object_cells(now_values))
    dy, dx, kn, nn = torch.stack([ny - ky, nx - kx, kn, nn]).tolist()
    out = {}
    for i in range(len(kn)):
        if kn[i] == 0:
            continue
        o = i + 1
        if nn[i] >= MIN_CELLS_RATIO * kn[i]:
            last[o] = (STEP * round(dy[i] / STEP), STEP * round(dx[i] / STEP))
        out[o] = last.get(o, (0, 0))
    return out


def moved_groups(key_values: torch.Tensor, shifts: dict[int, tuple[int, int]]
                 ) -> list[tuple[tuple[int, int], tuple[int, ...]]]:
    """The moved copies to match: ``[(shift, objects)]``, objects sharing a shift grouped,
    shift (0, 0) left out (the keyframe itself covers it), the groups with the most
    keyframe cells first, at most :data:`MAX_MOVED`."""
    groups: dict[tuple[int, int], list[int]] = {}
    for o, s in shifts.items():
        if s != (0, 0):
            groups.setdefault(s, []).append(o)
    if not groups:
        return []
    cells = object_cells(key_values).sum((1, 2)).tolist()
    ranked = sorted(groups.items(), key=lambda g: -sum(int(cells[o - 1]) for o in g[1]))
    return [(s, tuple(objs)) for s, objs in ranked[:MAX_MOVED]]


def moved_keyframe(feat: torch.Tensor, key_values: torch.Tensor, shift: tuple[int, int],
                   objects: tuple[int, ...], n_labels: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The keyframe's features (C, h, w) and labels (V, h, w) moved by ``shift`` (where
    nothing moves in, the keyframe as it is), and the (1, h, w) 0/1 map of usable cells:
    not the cells of objects outside ``objects`` (they moved otherwise; their labels
    must not go along); None when every cell is usable (no mask for the attention).
    n_labels: the leading channels of ``key_values`` that are per-cell labels (the rest,
    sub-cell detail, move along with them); None: all."""
    dy, dx = shift
    entered = 1 - shift_cells(torch.ones_like(feat[:1]), dy, dx)      # nothing moved in

    def move(x: torch.Tensor) -> torch.Tensor:
        return shift_cells(x, dy, dx) + entered * x

    n = n_labels or key_values.shape[0]
    others = [o - 1 for o in range(1, n) if o not in objects]
    usable = None
    if others:
        usable = move((~object_cells(key_values[:n])[others].any(0, keepdim=True)).to(feat.dtype))
    return move(feat), move(key_values), usable
