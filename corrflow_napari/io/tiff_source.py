"""Frames of a tif stack: multi-page, or one ``(T,H,W)`` / ``(T,H,W,C)`` / ``(T,C,H,W)``
array, read through a memory map when the data is uncompressed, else page by page."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .frames import needs_scaling, to_rgb8, value_range
from .messages import short_error
from .source import FrameSource


class TiffSource(FrameSource):
    """The frames of a tif stack; fps from ImageJ metadata when present."""

    description = "tif stack"

    def __init__(self, path: Path):
        import tifffile
        self.path = path
        try:
            tf = tifffile.TiffFile(str(path))
        except Exception as err:
            raise InputError(f"tif stack {path} could not be read ({short_error(err)}); check "
                             "that it is a complete, uncorrupted TIFF file") from err
        self._tf = tf
        try:
            self._setup(tf)
        except InputError:
            tf.close()
            raise
        except Exception as err:
            tf.close()
            raise InputError(f"tif stack {path} could not be read ({short_error(err)}); check "
                             "that it is a complete, uncorrupted TIFF file") from err

    def _setup(self, tf):
        import tifffile
        path = self.path
        series = tf.series[0]
        shape = tuple(int(s) for s in series.shape)
        axes = str(series.axes)
        # drop singleton axes but keep at least (Y, X)
        keep = [k for k, s in enumerate(shape) if s != 1 or k >= len(shape) - 2]
        shape = tuple(shape[k] for k in keep)
        axes = "".join(axes[k] for k in keep) if len(axes) == len(series.shape) else ""
        nd = len(shape)
        move_c = False
        if nd == 2:
            t_axis = False
        elif nd == 3:
            if axes.endswith("S") and shape[2] in (3, 4):
                t_axis = False                      # one RGB(A) image
            elif axes.startswith("C") and shape[0] in (3, 4) and shape[2] > 4:
                t_axis = False                      # one planar RGB image
                move_c = True
            else:
                t_axis = True                       # (T, H, W)
        elif nd == 4:
            t_axis = True
            if shape[3] in (1, 2, 3, 4):
                pass                                # (T, H, W, C)
            elif shape[1] in (1, 2, 3, 4):
                move_c = True                       # (T, C, H, W), ImageJ style
            else:
                raise InputError(
                    f"tif stack {path} has shape {shape} (axes {axes or '?'}); expected (T,H,W) or "
                    "(T,H,W,C) with C = 1, 3 or 4 - save one time series of 2D frames")
        else:
            raise InputError(
                f"tif stack {path} has shape {shape} (axes {axes or '?'}); expected (T,H,W) or "
                "(T,H,W,C) with C = 1, 3 or 4 - save one time series of 2D frames (e.g. one "
                "z-plane or channel)")
        self._t_axis, self._move_c = t_axis, move_c
        frame_shape = shape[1:] if t_axis else shape
        if move_c:
            frame_shape = frame_shape[1:] + frame_shape[:1]
        self.n = shape[0] if t_axis else 1
        self.height, self.width = int(frame_shape[0]), int(frame_shape[1])
        if self.n == 0 or self.height == 0 or self.width == 0:
            raise InputError(f"tif stack {path} has no frames (shape {shape}); give a stack with "
                             "at least one frame")
        self._shape = shape
        # fastest: a memory map of uncompressed contiguous data
        self._mm = None
        try:
            mm = tifffile.memmap(str(path), mode="r")
            if int(np.prod(mm.shape)) == int(np.prod(shape)):
                self._mm = mm.reshape(shape)
        except Exception:
            self._mm = None
        self._full = None
        if self._mm is None:
            pages = [p for p in series.pages if p is not None] if hasattr(series, "pages") else []
            per_frame = len(pages) // self.n if self.n and pages else 0
            if per_frame and len(pages) == per_frame * self.n:
                self._pages = pages
                self._per_frame = per_frame
            else:   # data not split into pages per frame: read it once (small files)
                self._full = np.asarray(series.asarray()).reshape(shape)
        self.fps = None
        try:
            ij = tf.imagej_metadata or {}
            fi = float(ij.get("finterval") or 0)
            if fi > 0:
                self.fps = 1.0 / fi
            elif float(ij.get("fps") or 0) > 0:
                self.fps = float(ij["fps"])
        except Exception:
            self.fps = None
        dtype = np.dtype(series.dtype)
        self._scale = None
        if needs_scaling(dtype):       # one (min, max) for the whole stack
            self._scale = value_range(self._raw(i) for i in range(self.n))

    def _raw(self, i):
        t = self._t_axis
        if self._mm is not None:
            a = self._mm[i] if t else self._mm
        elif self._full is not None:
            a = self._full[i] if t else self._full
        else:
            k = self._per_frame
            parts = [p.asarray() for p in self._pages[i * k:(i + 1) * k]]
            a = parts[0] if k == 1 else np.stack(parts)
            a = a.reshape(self._shape[1:] if t else self._shape)
        a = np.asarray(a)
        if self._move_c:
            a = np.moveaxis(a, 0, -1)
        return a

    def read(self, i):
        try:
            a = self._raw(i)
        except Exception as err:
            raise InputError(f"tif stack {self.path}: frame {i} could not be read "
                             f"({short_error(err)}); the file may be truncated or corrupt"
                             ) from err
        return to_rgb8(a, self._scale)

    def close(self):
        self._mm = None
        try:
            self._tf.close()
        except Exception:  # pragma: no cover
            pass

