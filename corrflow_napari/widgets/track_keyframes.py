"""Correcting tracks on a later frame: the points the user moved in the tracked-points
layer become keyframes of their tracks in the user's Points layer, and a re-run from that
frame replaces only what those keyframes change. Qt-free (napari layer API only).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from .layer_arrays import track_ids


def moved_points(layer, t: int, ids: np.ndarray, positions: np.ndarray,
                 tol: float = 0.5) -> dict[int, tuple[float, float]]:
    """``{track id: (y, x)}`` for the points of the tracked-points ``layer`` on frame ``t``
    that are more than ``tol`` px from the tracking result ``positions`` (T, N, 2) of
    tracks ``ids`` (N,)."""
    data = np.asarray(layer.data, dtype=float)
    if len(data) == 0 or data.shape[1] < 3:
        return {}
    col = {int(tid): i for i, tid in enumerate(ids)}
    moved = {}
    for (tp, y, x), tid in zip(data[:, -3:], track_ids(layer)):
        if int(round(tp)) != t or int(tid) not in col:
            continue
        old = positions[t, col[int(tid)]]
        if not np.all(np.isfinite(old)) or np.hypot(*(old - (y, x))) > tol:
            moved[int(tid)] = (float(y), float(x))
    return moved


def add_keyframes(layer, t: int, moved: dict[int, tuple[float, float]]) -> None:
    """Put each moved point ``{track id: (y, x)}`` into the user's Points ``layer`` as its
    track's keyframe on frame ``t`` (replacing one already there); the layer gets a
    ``track_id`` feature if it had none (its points keep their ids 0..N-1)."""
    data = np.asarray(layer.data, dtype=float)
    if data.ndim != 2 or data.shape[1] < 3:
        raise InputError(f"Points layer '{layer.name}' has 2-D points; corrections need "
                         "points on the video's frames: add the Points layer while the "
                         "video is shown.")
    ids = track_ids(layer)
    rows = [r for r in data]
    out_ids = list(ids)
    for tid, (y, x) in moved.items():
        same = np.flatnonzero((ids == tid) & (np.round(data[:, -3]) == t))
        row = data[same[0]].copy() if len(same) else np.zeros(data.shape[1])
        row[-3:] = (t, y, x)
        if len(same):
            rows[same[0]] = row
        else:
            rows.append(row)
            out_ids.append(tid)
    features = layer.features.copy() if len(layer.features.columns) else pd.DataFrame()
    extra = len(rows) - len(data)
    if extra:
        features = pd.concat([features, pd.DataFrame(index=range(extra))],
                             ignore_index=True)
    features["track_id"] = np.asarray(out_ids, dtype=np.int64)
    layer.data = np.asarray(rows)
    layer.features = features.reset_index(drop=True)


def keyframe_spans(layer_ids: np.ndarray, layer_frames: np.ndarray, moved, t: int,
                   t_total: int) -> dict[int, tuple[int, int]]:
    """``{track id: (t, next keyframe of that track after t, or t_total)}``: the frames a
    correction on frame ``t`` changes, from the user's keyframes (ids, frames)."""
    spans = {}
    for tid in moved:
        later = layer_frames[(layer_ids == tid) & (layer_frames > t)]
        spans[tid] = (t, int(later.min()) if len(later) else t_total)
    return spans


def merge_spans(positions: np.ndarray, visible: np.ndarray, ids: np.ndarray,
                new_positions: np.ndarray, new_visible: np.ndarray, new_ids,
                spans: dict[int, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The result (T, N, 2) / (T, N) of tracks ``ids`` with, for each track of ``spans``,
    frames [lo, hi) taken from a re-run over tracks ``new_ids``."""
    pos, vis = positions.copy(), visible.copy()
    where = {int(tid): i for i, tid in enumerate(ids)}
    for j, tid in enumerate(new_ids):
        lo, hi = spans[int(tid)]
        pos[lo:hi, where[int(tid)]] = new_positions[lo:hi, j]
        vis[lo:hi, where[int(tid)]] = new_visible[lo:hi, j]
    return pos, vis
