"""DAVIS-layout datasets: ``ROOT/JPEGImages/480p/<seq>/*.jpg``,
``ROOT/Annotations/480p/<seq>/*.png`` (indexed PNGs), ``ROOT/ImageSets/.../*.txt``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError


def list_sequences(root: str | Path, resolution: str = "480p") -> list[str]:
    """All sequence names under ``root`` (from its JPEGImages folder), sorted."""
    img = Path(root) / "JPEGImages" / resolution
    if not img.is_dir():
        raise InputError(f"{root} is not a DAVIS folder (no JPEGImages/{resolution} inside); "
                         "give the folder that contains JPEGImages and Annotations.")
    return sorted(p.name for p in img.iterdir() if p.is_dir())


def resolve_sequences(root: str | Path, spec: str, resolution: str = "480p") -> list[str]:
    """``"all"`` or a comma list -> validated sequence names."""
    available = list_sequences(root, resolution)
    if spec.strip().lower() == "all":
        return available
    names = [s.strip() for s in spec.split(",") if s.strip()]
    missing = [s for s in names if s not in available]
    if missing:
        raise InputError(f"sequence(s) {', '.join(missing)} not found in {root}; "
                         f"available: {', '.join(available)}.")
    return names


def frame_folder(root: str | Path, seq: str, resolution: str = "480p") -> Path:
    return Path(root) / "JPEGImages" / resolution / seq


def load_annotations(root: str | Path, seq: str, resolution: str = "480p"
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """(T, H, W) integer ground truth of a sequence and its palette ((256, 3) or None)."""
    from ..io import read_mask
    folder = Path(root) / "Annotations" / resolution / seq
    files = sorted(folder.glob("*.png"))
    if not files:
        raise InputError(f"no annotation PNGs in {folder}; check the DAVIS folder.")
    masks, palette = [], None
    for f in files:
        m, pal = read_mask(f)
        palette = palette if palette is not None else pal
        masks.append(m)
    return np.stack(masks), palette


def load_sequence_prefix(root: str | Path, seq: str, max_frames: int | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``max_frames`` frames (all: None) of a sequence and their ground truth:
    ((T, H, W, 3) uint8, (T, H, W) ids), for quick comparisons on a sequence's start."""
    from ..io import open_video
    gt, _ = load_annotations(root, seq)
    video = open_video(frame_folder(root, seq))
    n = len(gt) if max_frames is None else min(len(gt), max_frames)
    return np.stack([video[i] for i in range(n)]), gt[:n]
