"""The frame-source interface, and the source of an in-memory array.

A source knows how to decode frame ``i`` of one kind of input (video file, gif, folder,
tif stack, array); :class:`~corrflow_napari.io.video.Video` adds the cache, the lock,
indexing and the numpy protocol on top.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .frames import needs_scaling, to_rgb8, value_range


class FrameSource:
    """``n`` frames of ``height`` x ``width`` pixels; ``fps`` when known."""

    n: int
    height: int
    width: int
    fps: float | None = None
    description = "video"        # names the input in messages: "video", "gif", ...
    #: True when reading frame i costs a seek unless frame i - 1 (or a little before) was
    #: read last: :class:`~corrflow_napari.io.video.Video` then reads a backward walk
    #: through the video in blocks, each decoded in increasing order after one seek
    sequential = False

    def read(self, i: int) -> np.ndarray:
        """Frame ``i`` (0 <= i < n) as (H, W, 3) uint8."""
        raise NotImplementedError

    def close(self) -> None:
        """Release open files or processes."""


class ArraySource(FrameSource):
    """Frames of a ``(T,H,W)`` or ``(T,H,W,C)`` array-like, C = 1..4, any numeric dtype;
    non-uint8 data is rescaled with the array's (min, max)."""

    description = "array"

    def __init__(self, arr, name: str):
        shape = tuple(getattr(arr, "shape", ()))
        if not shape:
            arr = np.asarray(arr)
            shape = arr.shape
        if not (len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 2, 3, 4))):
            raise InputError(f"array '{name}' has shape {shape}; expected (T,H,W) grey or "
                             "(T,H,W,C) with C = 1, 3 or 4 - reshape the array to one of these")
        if shape[0] == 0:
            raise InputError(f"array '{name}' has zero frames; give at least one frame")
        if shape[1] == 0 or shape[2] == 0:
            raise InputError(f"array '{name}' has empty frames (shape {shape}); give non-empty "
                             "frames")
        self._arr = arr
        self.n, self.height, self.width = int(shape[0]), int(shape[1]), int(shape[2])
        dtype = np.dtype(getattr(arr, "dtype", np.float64))
        self._scale = None
        if needs_scaling(dtype):
            if isinstance(arr, np.ndarray):
                self._scale = value_range([arr])
            else:
                self._scale = value_range(np.asarray(arr[i]) for i in range(self.n))
        # a uint8 RGB ndarray is served as views, without the cache
        self.direct = (isinstance(arr, np.ndarray) and arr.dtype == np.uint8
                       and arr.ndim == 4 and arr.shape[3] == 3)

    def view(self, i: int) -> np.ndarray:
        """Frame i of a ``direct`` source: a view of the array, no copy."""
        return self._arr[i]

    def read(self, i):
        return to_rgb8(np.asarray(self._arr[i]), self._scale)
