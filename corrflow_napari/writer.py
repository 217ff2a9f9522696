"""Saving (T, H, W) labels: a folder of indexed PNGs (``00000.png ...``, the format the
CLI writes and DAVIS tools read) or one tif stack. Every file is written atomically.

Also the npe2 writer contributions for Labels layers (``napari.yaml``): a path without
an extension is a folder of PNGs, ``.tif`` / ``.tiff`` a stack. Qt-free.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import write_indexed_png
from .io.atomic import atomic_path
from .io.formats import TIFF_EXTENSIONS
from .io.messages import short_error
from .io.paths import as_path, prepare_output

#: the export formats: a folder of indexed PNGs, or one tif stack
FORMATS = ("png folder", "tif stack")


def mask_name(t: int) -> str:
    """File name of frame ``t``'s mask in a PNG folder (``00007.png``)."""
    return f"{int(t):05d}.png"


def _check_labels(labels) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in np.shape(labels))
    if len(shape) != 3:
        raise InputError(f"labels of shape {shape} are not a video's labels; export a "
                         "(frames, height, width) Labels layer.")
    if np.dtype(labels.dtype).kind not in "iub":
        raise InputError(f"labels have dtype {labels.dtype}; export integer object ids.")
    return shape


def existing_masks(folder, n_frames: int) -> list[Path]:
    """The files of a PNG export of ``n_frames`` frames that already exist in ``folder``
    (what an export there would replace)."""
    folder = as_path(folder)
    return [folder / mask_name(t) for t in range(n_frames) if (folder / mask_name(t)).exists()]


def write_mask_folder(folder, labels, palette=None,
                      progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Write (T, H, W) ids 0..255 as ``folder/00000.png ...``: one indexed PNG per frame,
    ``palette`` (N, 3) colours (default DAVIS), each file atomic. Returns the paths."""
    t_total = _check_labels(labels)[0]
    folder = as_path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file; give a folder name for the PNG masks.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create folder {folder} ({short_error(err)}); check the "
                         "path and permissions.") from err
    paths = []
    for t in range(t_total):
        p = folder / mask_name(t)
        write_indexed_png(p, np.asarray(labels[t]), palette)
        paths.append(p)
        if progress is not None:
            progress(t + 1, t_total)
    return paths


def write_tif_stack(path, labels) -> Path:
    """Write (T, H, W) ids as one tif stack (uint8 when they fit, else uint16 / uint32),
    atomically."""
    import tifffile
    _check_labels(labels)
    p = prepare_output(path, "labels stack")
    data = np.asarray(labels)
    top = int(data.max()) if data.size else 0
    if data.size and int(data.min()) < 0:
        raise InputError(f"labels for {p} have negative ids; object ids must be 0 or more.")
    dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.uint32
    try:
        with atomic_path(p) as tmp:
            tifffile.imwrite(tmp, data.astype(dtype, copy=False), imagej=dtype != np.uint32,
                             metadata={"axes": "TYX"} if dtype != np.uint32 else None)
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"could not write {p} ({short_error(err)}); check the disk space "
                         "and permissions.") from err
    return p


def export_labels(path, labels, palette=None,
                  progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """A ``.tif`` / ``.tiff`` path: one stack; any other path: a folder of indexed PNGs."""
    if as_path(path).suffix.lower() in TIFF_EXTENSIONS:
        return [write_tif_stack(path, labels)]
    return write_mask_folder(path, labels, palette, progress)


# ------------------------------------------------------------------ npe2 contributions
def write_labels_folder(path: str, data, meta: dict) -> list[str]:
    """npe2 writer: a Labels layer as a folder of indexed PNGs."""
    return [str(p) for p in write_mask_folder(path, data)]


def write_labels_tif(path: str, data, meta: dict) -> list[str]:
    """npe2 writer: a Labels layer as one tif stack."""
    return [str(write_tif_stack(path, data))]
