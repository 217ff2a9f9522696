"""What a re-run reuses of the propagation chains an earlier run kept in the cache.

A chain's soft labels are kept under a key (:func:`side_keys`) of its direction, source
keyframe, a hash of the source's mask and the settings, so a re-run after a correction
only runs the chains that start at the corrected frame.

Those new chains still cover every frame up to the next keyframe (or the video's end),
while a correction usually fixes a stretch of frames around itself: far from it the new
chain soon carries the same labels as the chain it replaces. :class:`Settling` notices
that - the new chain's labels differ from the old chain's by at most ``settle`` of each
object's probability mass for ``n_recent`` frames in a row, i.e. its whole memory of
recent frames agrees - and from there the chain takes the old chain's labels instead of
running the attention. The old chain is the one that ran through these frames in the same
direction before the correction (forward: from the keyframe before; backward: from the
keyframe after). Nothing is reused without a cache, so a first run computes every frame.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch


def side_keys(seeds: dict[int, torch.Tensor], settings):
    """``side_key(source, forward)``: what a chain's values depend on besides the video and
    the model: its direction, source frame and seed, and the settings; None (no reuse)
    when other keyframes are references too (``max_keyframes`` > 1)."""
    if settings.max_keyframes > 1:
        return None
    sig = (settings.radius, settings.topk, settings.n_recent, settings.follow, settings.min_mass,
           settings.settle)
    digest = {k: hashlib.blake2b(v.detach().cpu().numpy().tobytes(), digest_size=8).hexdigest()
              for k, v in seeds.items()}
    return lambda source, forward: ("side", forward, source, digest[source], sig)


def difference(new: torch.Tensor, old: torch.Tensor) -> float:
    """Largest share of an object's probability that moved between two soft label maps
    ``(V, h, w)`` (channel 0 the background): max over objects of
    sum |new - old| / sum (new + old), 0 for identical maps (objects absent in both: 0)."""
    new, old = new[1:].float(), old[1:].float()
    moved = (new - old).abs().sum(dim=(1, 2))
    total = (new + old).sum(dim=(1, 2))
    share = torch.where(total > 0, moved / total.clamp_min(1e-12), torch.zeros_like(total))
    return float(share.max()) if share.numel() else 0.0


class Settling:
    """Decides, frame by frame along one new chain, when to take the old chain's labels.

    old(t): the old chain's (V, h, w) values of frame t, or None (not kept). ``settle``:
    the tolerance of :func:`difference` on the label channels (``n``); ``runs``: how many
    agreeing frames in a row settle the chain. :meth:`reuse` gives frame t's old values
    once settled (None before, or where the old chain has no values: computed again);
    :meth:`computed` tells it the new values of a frame it computed. ``settled_at``: the
    first frame taken from the old chain (None: none).
    """

    def __init__(self, old: Callable[[int], torch.Tensor | None] | None, settle: float,
                 n: int, runs: int):
        self.old, self.settle, self.n, self.runs = old, settle, n, max(1, runs)
        self.agreeing = 0
        self.settled_at: int | None = None

    def reuse(self, t: int) -> torch.Tensor | None:
        if self.old is None or self.agreeing < self.runs:
            return None
        vals = self.old(t)
        if vals is not None and self.settled_at is None:
            self.settled_at = t
        return vals

    def computed(self, t: int, vals: torch.Tensor) -> None:
        if self.old is None or self.settle <= 0:
            return
        before = self.old(t)
        same = before is not None and difference(vals[:self.n], before[:self.n]) <= self.settle
        self.agreeing = self.agreeing + 1 if same else 0


def old_chain(source: int, forward: bool, keys: list[int]) -> tuple[int, bool] | None:
    """The chain ``(keyframe, forward)`` that covered a new chain's frames in the same
    direction before keyframe ``source`` existed: going forward, the one from the keyframe
    before ``source``; going backward, from the keyframe after it (None where there is
    none). Not the other direction's: between two keyframes the fusion averages two chains
    that err differently, and a chain settled onto the other side's would lose that."""
    if forward:
        before = [k for k in keys if k < source]
        return (before[-1], True) if before else None
    after = [k for k in keys if k > source]
    return (after[0], False) if after else None


def old_values(cache, key_of: Callable, side_key: Callable,
               chain: tuple[int, bool]) -> Callable[[int], torch.Tensor | None]:
    """``old(t)``: frame t's values kept in ``cache`` for ``chain`` (:func:`old_chain`), or
    None. key_of(t, what): the cache key of frame t's values. (Within one run the old
    chain never reaches the new chain's frames: it stops at the new keyframe, so what it
    holds there is an earlier run's.)"""
    def old(t: int) -> torch.Tensor | None:
        return cache.get(key_of(t, side_key(*chain)))
    return old
