"""Which propagation chains run: from each keyframe forward and backward, paired between
two keyframes for the two-sided fusion, and which frames a changed keyframe affects.

A chain is ``(source keyframe, [target frames in order])``; the engine
(:mod:`corrflow_napari.propagation`) runs each with the source and its own most recent
frames as references. ``settings`` here is a ``PropagationSettings`` (its ``fusion`` and
``max_keyframes``).
"""
from __future__ import annotations

from collections.abc import Iterable

from .errors import InputError


def schedule(keys: list[int], t_total: int, start: int, stop: int,
             direction: str, two_sided: bool = False) -> list[tuple[int, list[int]]]:
    """Chains ``(source keyframe, [target frames in order])``.

    forward: k_i+1 .. k_{i+1}-1; backward: k_i-1 .. k_{i-1}+1; both: forward from every
    keyframe, backward before the first (``two_sided``: from every keyframe). Chains that
    reach [start, stop) are kept, ending at its far end.
    """
    if direction not in ("forward", "backward", "both"):
        raise InputError(f"direction must be forward, backward or both, not {direction!r}.")
    segments = []
    if direction in ("forward", "both"):
        for i, k in enumerate(keys):
            end = keys[i + 1] if i + 1 < len(keys) else t_total
            targets = list(range(k + 1, min(end, stop)))
            if targets and targets[-1] >= start:
                segments.append((k, targets))
    backward_keys = keys[:1] if direction == "both" and not two_sided else keys
    if direction in ("backward", "both"):
        for k in backward_keys:
            i = keys.index(k)
            end = keys[i - 1] if i > 0 else -1
            targets = list(range(k - 1, max(end, start - 1), -1))
            if targets and targets[-1] < stop:
                segments.append((k, targets))
    return segments


def affected_range(keyframes: Iterable[int], k: int, t_total: int,
                   settings=None) -> tuple[int, int]:
    """``(start, stop)`` for ``propagate`` after keyframe ``k`` was added, repainted or
    removed: the frames between the keyframes on either side of ``k`` (0 / ``t_total``
    where none). One-sided: from ``k`` unless it is (was) the first keyframe. With
    ``max_keyframes`` > 1 any frame may use ``k`` as a reference: (0, t_total)."""
    keys = sorted({int(t) % t_total for t in keyframes} - {k})
    if getattr(settings, "max_keyframes", 1) > 1:
        return 0, t_total
    before = [t for t in keys if t < k]
    after = [t for t in keys if t > k]
    start = before[-1] + 1 if before else 0
    if getattr(settings, "fusion", None) == "one-sided" and before:
        start = k
    return start, after[0] if after else t_total


def plan_chains(keys: list[int], t_total: int, start: int, stop: int, direction: str,
                two_sided: bool) -> list[tuple]:
    """Chains in run order: ``(forward chain or None, backward chain or None)`` where a
    chain is ``(source, targets)``; a pair covers the frames between two keyframes."""
    segments = schedule(keys, t_total, start, stop, direction, two_sided)
    fwd = [(s, tg) for s, tg in segments if tg[0] > s]
    bwd = {s: tg for s, tg in segments if tg[0] < s}
    plan = []
    for s, tg in fwd:
        nxt = next((k for k in keys if k > s), None)
        plan.append(((s, tg), (nxt, bwd.pop(nxt)) if two_sided and nxt in bwd else None))
    return plan + [(None, (s, tg)) for s, tg in bwd.items()]
