"""The working resolution: the size at which frames are matched.

Frames are matched at a short side of at most ``settings.max_size`` pixels (0 = the
video's own size), never larger than ``settings.scale`` allows; labels and tracks come
back at the video's full size (the engine upsamples the soft labels, then takes the
argmax).

Small objects must not vanish. Features are 1/4 of the working frame, one cell = 4 x 4
working pixels, and a painted object reaches the engine as the area-averaged share of
each cell. An object ``MIN_CELLS`` = 3 cells across fully covers at least 2 x 2 cells
wherever the grid falls, so it keeps cells it owns outright in every reference; at 2
cells across it may own a single cell, at 1 none. When a painted object would be smaller
than that at the working size, the scale is raised for that video (up to
``settings.scale``, by default the full size) and a one-line note says so and how to
change it. An object's size is its largest over the keyframes: on a correction keyframe
an object may be a sliver (partly hidden, leaving the frame) that its full views on
other keyframes carry, and raising the scale for it would re-encode the whole video
larger (a re-run after a correction on a 720p clip took 3.7x the first run). The
engine emits notes as :class:`WorkingResolutionNote` warnings (the CLI prints them as
one line on stderr; napari shows them as notifications).
"""
from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

MIN_CELLS = 3          # an object needs this many feature cells across to survive
STRIDE = 4             # working pixels per feature cell
SPECK_FRACTION = 0.1   # parts of an object under this share of its largest part: specks


class WorkingResolutionNote(UserWarning):
    """The working resolution was raised for small objects, or objects may be lost."""


def _object_boxes(mask: np.ndarray) -> list[tuple[int, tuple[slice, slice]]]:
    """(id, bounding box) of each nonzero id of an integer (H, W) mask. Small non-negative
    ids are boxed directly (a 4K mask: ~30 ms; sorting its pixels for their ids took ~1 s)."""
    from scipy import ndimage

    if mask.dtype.kind in "ui" and mask.min() >= 0 and mask.max() < 2 ** 16:
        boxes = ndimage.find_objects(mask.astype(np.int32, copy=False))
        return [(k + 1, b) for k, b in enumerate(boxes) if b is not None]
    ids, inverse = np.unique(mask, return_inverse=True)
    boxes = ndimage.find_objects(inverse.reshape(mask.shape) + 1)
    return [(int(oid), b) for oid, b in zip(ids, boxes) if oid != 0 and b is not None]


def object_sizes(keyframes: dict[int, np.ndarray]) -> list[tuple[float, int, int]]:
    """``(diameter px, object id, frame)`` of every painted object, smallest first: one
    entry per object id, from the keyframe where it is largest.

    An object's diameter on a keyframe is that of a disc of the area of its smallest
    connected part there, ignoring specks (parts under ``SPECK_FRACTION`` of its largest
    part, e.g. stray paint).
    """
    from scipy import ndimage

    sizes = []
    for t, mask in (keyframes or {}).items():
        mask = np.asarray(mask)
        if mask.ndim != 2 or not mask.any():
            continue
        for oid, box in _object_boxes(mask):
            parts, n = ndimage.label(mask[box] == oid)
            areas = np.bincount(parts.ravel(), minlength=n + 1)[1:]
            area = areas[areas >= SPECK_FRACTION * areas.max()].min()
            sizes.append((2.0 * math.sqrt(area / math.pi), int(oid), int(t)))
    largest: dict[int, tuple[float, int, int]] = {}
    for d, oid, t in sizes:
        if oid not in largest or d > largest[oid][0]:
            largest[oid] = (d, oid, t)
    return sorted(largest.values())


def working_scale(settings, h: int, w: int,
                  keyframes: dict[int, np.ndarray] | None = None) -> tuple[float, str | None]:
    """``(scale, note)`` for an (H, W) video: frames are resized by ``scale`` before
    matching. ``settings``: a PropagationSettings (``scale``, ``max_size``). ``keyframes``:
    {t: (H, W) ids} painted objects; ``note``: one line, or None when nothing to say."""
    cap = float(settings.scale)
    max_size = int(getattr(settings, "max_size", 0) or 0)
    short = min(h, w)
    scale = min(cap, max_size / short) if max_size > 0 else cap
    sizes = object_sizes(keyframes) if keyframes else []
    if not sizes:
        return scale, None
    d, oid, t = sizes[0]
    need_px = MIN_CELLS * STRIDE
    need = need_px / d                     # the scale at which the object is need_px across
    what = f"object {oid} (frame {t}) is {d:.0f} px across"
    if need <= scale + 1e-9:
        return scale, None
    if scale < cap:                        # max_size shrank it: raise, up to the cap
        raised = min(cap, need)
        note = (f"matching at a short side of {round(short * raised)} px, not "
                f"{round(short * scale)}: {what} and needs {need_px} px ({MIN_CELLS} feature "
                f"cells) when matched; --max-size 0: full size, --scale {scale:.3g}: the "
                f"smaller size (the object may be lost)")
        if raised < need:
            note += f"; at scale {raised:.3g} it is still under {MIN_CELLS} cells, may be lost"
        return raised, note + "."
    if cap < 1.0:
        return scale, (f"{what}: at --scale {cap:.3g} it is under {MIN_CELLS} feature cells "
                       f"and may be lost; --scale {min(1.0, need):.3g} keeps it.")
    return scale, (f"{what}: even at full size it is under {MIN_CELLS} feature cells "
                   f"({need_px} px) and may be lost; paint it larger or upsample the video.")


def at_working_resolution(settings, h: int, w: int,
                          keyframes: dict[int, np.ndarray] | None = None):
    """``settings`` with ``scale`` set to the working scale (and ``max_size`` 0, so it is
    not applied twice); the note, if any, is emitted as a :class:`WorkingResolutionNote`."""
    scale, note = working_scale(settings, h, w, keyframes)
    if note:
        warnings.warn(note, WorkingResolutionNote, stacklevel=3)
    return dataclasses.replace(settings, scale=scale, max_size=0)
