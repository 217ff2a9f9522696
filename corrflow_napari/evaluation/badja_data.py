"""BADJA annotations (Biggs et al., "Creatures Great and SMAL", ACCV 2018): real animal
joints on some DAVIS videos.

One JSON per sequence, ``<badja_dir>/<sequence>.json``: a list of annotated frames (about
every 5th), each with ``image_path`` (the frame number is the file name), ``joints``
(37 rows of ``[row, col]`` on the 1920x1080 original frames) and ``visibility``.
The frames and object masks come from a DAVIS folder (:mod:`.davis_data`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import InputError

ALPHAS = (0.1, 0.2)        # PCK thresholds, as fractions of sqrt(object area)
NATIVE_HW = (1080, 1920)   # BADJA joints are on the full-resolution DAVIS frames


class BadjaSequence(NamedTuple):
    """One sequence's annotations. ``frames`` (K,) video frame numbers (increasing);
    ``joints`` (K, J, 2) (y, x) in BADJA's 1920x1080 pixels; ``visible`` (K, J) bool."""

    name: str
    frames: np.ndarray
    joints: np.ndarray
    visible: np.ndarray


def load_badja(path: str | os.PathLike) -> BadjaSequence:
    """Read one BADJA JSON (the sequence name is the file's stem)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"BADJA annotation {path} does not exist; give the folder holding "
                         "<sequence>.json files.")
    try:
        entries = json.loads(path.read_text())
        rows = []
        for e in entries:
            frame = int(Path(str(e["image_path"]).replace("\\", "/")).stem)
            joints = np.asarray(e["joints"], dtype=np.float64).reshape(-1, 2)
            vis = np.asarray(e["visibility"], dtype=bool).reshape(-1)
            if len(vis) != len(joints):
                raise ValueError(f"{len(joints)} joints but {len(vis)} visibility flags")
            rows.append((frame, joints, vis))
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a BADJA annotation file ({exc}).") from None
    if not rows:
        raise InputError(f"{path} holds no annotated frame.")
    rows.sort(key=lambda r: r[0])
    if len({r[1].shape for r in rows}) != 1:
        raise InputError(f"{path}: annotated frames have different numbers of joints.")
    return BadjaSequence(path.stem, np.array([r[0] for r in rows]),
                         np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows]))


def first_frames(seq: BadjaSequence, stop: int) -> BadjaSequence:
    """``seq`` without the annotated frames numbered ``stop`` or later."""
    keep = seq.frames < stop
    return BadjaSequence(seq.name, seq.frames[keep], seq.joints[keep], seq.visible[keep])


def to_frame_pixels(joints: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """BADJA (y, x) on 1920x1080 -> (y, x) on frames of size ``hw`` (e.g. 480x854:
    y * 480/1080, x * 854/1920)."""
    return np.asarray(joints, float) * np.array([hw[0] / NATIVE_HW[0], hw[1] / NATIVE_HW[1]])


def to_native_pixels(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`to_frame_pixels`."""
    return np.asarray(points, float) * np.array([NATIVE_HW[0] / hw[0], NATIVE_HW[1] / hw[1]])


def list_badja_sequences(badja_dir: str | os.PathLike) -> list[str]:
    """Names of the sequences with a ``<name>.json`` in ``badja_dir``, sorted."""
    d = Path(badja_dir)
    if not d.is_dir():
        raise InputError(f"BADJA folder {d} does not exist.")
    names = sorted(p.stem for p in d.glob("*.json"))
    if not names:
        raise InputError(f"no BADJA <sequence>.json files in {d}.")
    return names


def resolve_badja_sequences(badja_dir: str | os.PathLike, spec: str) -> list[str]:
    """``"all"`` or a comma list -> sequence names that have a BADJA JSON."""
    have = list_badja_sequences(badja_dir)
    if spec.strip().lower() == "all":
        return have
    names = [s.strip() for s in spec.split(",") if s.strip()]
    missing = [s for s in names if s not in have]
    if missing or not names:
        raise InputError(f"no BADJA annotation for {', '.join(missing) or 'any sequence'} in "
                         f"{badja_dir}; available: {', '.join(have)}.")
    return names
