"""DAVIS-layout datasets: ``ROOT/JPEGImages/480p/<seq>/*.jpg`` (frames),
``ROOT/Annotations/480p/<seq>/00000.png ...`` (indexed PNG ground truth, one per frame),
``ROOT/ImageSets/.../*.txt``. Several roots (e.g. DAVIS 2016 train and dev) may be given
together; the first one holding a sequence is used."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError


def check_root(root: str | os.PathLike, resolution: str = "480p") -> Path:
    """``root`` as a Path, or an InputError when it has no ``JPEGImages/<resolution>``."""
    root = Path(root)
    if not (root / "JPEGImages" / resolution).is_dir():
        raise InputError(f"{root} is not a DAVIS folder (no JPEGImages/{resolution} inside); "
                         "give the folder that contains JPEGImages and Annotations.")
    return root


def list_sequences(root: str | os.PathLike, resolution: str = "480p") -> list[str]:
    """All sequence names under ``root`` (from its JPEGImages folder), sorted."""
    img = check_root(root, resolution) / "JPEGImages" / resolution
    return sorted(p.name for p in img.iterdir() if p.is_dir())


def resolve_sequences(root: str | os.PathLike, spec: str, resolution: str = "480p"
                      ) -> list[str]:
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


def split_roots(spec) -> list[Path]:
    """DAVIS roots given as one path, a list, or a string joined by ',' or os.pathsep;
    each is checked to be a DAVIS folder."""
    if isinstance(spec, (str, os.PathLike)):
        parts = [p for chunk in str(spec).split(os.pathsep) for p in chunk.split(",")]
    else:
        parts = [str(p) for p in spec]
    roots = [Path(p.strip()) for p in parts if p.strip()]
    if not roots:
        raise InputError("no DAVIS folder given.")
    return [check_root(r) for r in roots]


def find_sequence_root(roots: Sequence[str | os.PathLike], seq: str) -> Path:
    """The first DAVIS root holding frames of ``seq``."""
    for r in roots:
        if frame_folder(r, seq).is_dir():
            return Path(r)
    raise InputError(f"sequence {seq} has no frames in {', '.join(map(str, roots))} "
                     "(looked for JPEGImages/480p/" + seq + "); add the DAVIS folder that "
                     "holds it.")


def frame_folder(root: str | os.PathLike, seq: str, resolution: str = "480p") -> Path:
    """The folder of a sequence's frames."""
    return Path(root) / "JPEGImages" / resolution / seq


def annotation_folder(root: str | os.PathLike, seq: str, resolution: str = "480p") -> Path:
    """The folder of a sequence's ground-truth PNGs."""
    return Path(root) / "Annotations" / resolution / seq


def read_frame_annotation(root: str | os.PathLike, seq: str, frame: int,
                          resolution: str = "480p") -> np.ndarray:
    """(H, W) integer ground truth of frame number ``frame`` (file ``<frame:05d>.png``)."""
    from ..io import read_mask
    path = annotation_folder(root, seq, resolution) / f"{frame:05d}.png"
    if not path.is_file():
        raise InputError(f"ground-truth mask {path} is missing; this evaluation needs the "
                         "DAVIS annotation of that frame.")
    return read_mask(path)[0]


def load_annotations(root: str | os.PathLike, seq: str, resolution: str = "480p"
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """(T, H, W) integer ground truth of a sequence and its palette ((256, 3) or None)."""
    from ..io import read_mask
    folder = annotation_folder(root, seq, resolution)
    files = sorted(folder.glob("*.png"))
    if not files:
        raise InputError(f"no annotation PNGs in {folder}; check the DAVIS folder.")
    masks, palette = [], None
    for f in files:
        m, pal = read_mask(f)
        palette = palette if palette is not None else pal
        masks.append(m)
    return np.stack(masks), palette


def load_sequence_prefix(root: str | os.PathLike, seq: str, max_frames: int | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``max_frames`` frames (all: None) of a sequence and their ground truth:
    ((T, H, W, 3) uint8, (T, H, W) ids), for quick comparisons on a sequence's start."""
    from ..io import open_video
    gt, _ = load_annotations(root, seq)
    video = open_video(frame_folder(root, seq))
    n = len(gt) if max_frames is None else min(len(gt), max_frames)
    return np.stack([video[i] for i in range(n)]), gt[:n]
