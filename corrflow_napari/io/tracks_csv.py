"""Track CSV files: ``track_id,t,y,x,visible`` rows (pixel coordinates)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import InputError
from .atomic import atomic_path


def write_tracks_csv(path, ids, positions, visible, frames=None,
                     id_column: str = "track_id") -> None:
    """Write ``<id_column>,t,y,x,visible`` rows atomically. positions (T, N, 2) y, x;
    visible (T, N); frames: the frame number of each of the T rows (default 0..T-1)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = range(positions.shape[0]) if frames is None else frames
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([id_column, "t", "y", "x", "visible"])
        for k, t in enumerate(frames):
            for i, tid in enumerate(ids):
                y, x = positions[k, i]
                w.writerow([tid, int(t), f"{y:.2f}", f"{x:.2f}", int(bool(visible[k, i]))])


def read_points_csv(path) -> tuple[list[str], np.ndarray]:
    """Read ``track_id,t,y,x`` rows: (ids, (N, 3) float t, y, x pixels).

    A track_id may repeat on different frames: its rows are that track's keyframes (a
    point the user placed again on a later frame, e.g. a correction); twice on one frame
    is an error."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"points file {p} does not exist; check the path.")
    try:
        with open(p, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"points file {p} is not a readable CSV ({exc}); save it as text CSV "
                         "with columns track_id,t,y,x.") from None
    need = {"track_id", "t", "y", "x"}
    have = set(rows[0].keys()) if rows else set()
    if not rows or not need <= {h.strip() for h in have if h}:
        missing = sorted(need - {h.strip() for h in have if h})
        raise InputError(f"points file {p} lacks column(s) {', '.join(missing) or 'rows'}; "
                         "it needs a header track_id,t,y,x and one row per point.")
    try:
        rows = [{k.strip(): v for k, v in r.items() if k} for r in rows]
        ids = [r["track_id"].strip() for r in rows]
        pts = np.array([[float(r["t"]), float(r["y"]), float(r["x"])] for r in rows])
    except (ValueError, TypeError, AttributeError):
        raise InputError(f"points file {p} has a non-numeric t, y or x value; "
                         "use numbers (pixels, frame index).") from None
    seen = set()
    for tid, t in zip(ids, pts[:, 0].round().astype(int).tolist()):
        if (tid, t) in seen:
            raise InputError(f"points file {p} repeats track_id {tid} on frame {t}; keep one "
                             "row per track and frame (rows on other frames are keyframes).")
        seen.add((tid, t))
    return ids, pts
