"""Reference tiles written over instead of allocated afresh.

Tiling a reference for :func:`~corrflow_napari.model.attention.attend` writes ~9x its
features (M = 8, tile 8); into freshly allocated memory that costs a page fault per 4 KB
(a 480p frame: ~20 ms fresh, ~2 ms into touched memory), so a propagation loop hands the
tiles of references it no longer uses back to be written over.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .attention import ReferenceTiles, prepare_reference, tiles_size


class TileRecycler:
    """Tiles of references no longer used (:meth:`release`), written over by the next ones
    :meth:`prepare` makes (``prepare_reference``'s ``out``), at most ``keep`` per size."""

    def __init__(self, keep: int = 4):
        self.keep, self.spare = keep, {}

    def release(self, refs: Sequence[ReferenceTiles]) -> None:
        for r in refs:
            pool = self.spare.setdefault((r.tiles.numel(), r.tiles.dtype, r.tiles.device), [])
            if len(pool) < self.keep:
                pool.append(r.tiles)

    def prepare(self, ref: torch.Tensor, radius: int = 6, metric: str = "dot", tile: int = 8,
                ref_valid: torch.Tensor | None = None) -> ReferenceTiles:
        """:func:`prepare_reference` into released tiles of the same size, if any."""
        pool = self.spare.get((tiles_size(ref, radius, metric, tile), ref.dtype, ref.device))
        return prepare_reference(ref, radius, metric, tile, ref_valid,
                                 out=pool.pop() if pool else None)
