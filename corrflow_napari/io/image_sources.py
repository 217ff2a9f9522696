"""Frames that are image files: a folder of frames, or one image as a one-frame video.

Frames are the :data:`~corrflow_napari.io.formats.IMAGE_EXTENSIONS` files directly in
the folder, in natural order of their names (``f2.png`` before ``f10.png``; zero-padded
names sort as usual); they must all have one size.  16-bit / float frames are rescaled
with one range for the whole folder.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from .formats import CLIP_EXTENSIONS, TIFF_EXTENSIONS, is_frame_file
from .frames import needs_scaling, to_rgb8, value_range
from .messages import short_error
from .source import FrameSource

_HIGH_DEPTH_PIL_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def natural_key(name: str):
    """Sort key that orders the digit runs of ``name`` by value: f2 < f10."""
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok.lower())
            for tok in re.split(r"(\d+)", name) if tok != ""]


def read_image_raw(path: Path) -> np.ndarray:
    """One image file -> (H,W) or (H,W,C) array in its own dtype (8-bit modes -> RGB uint8)."""
    if path.suffix.lower() in TIFF_EXTENSIONS:
        import tifffile
        a = np.asarray(tifffile.imread(str(path)))
        a = np.squeeze(a) if a.ndim > 3 else a
        if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[2] not in (1, 2, 3, 4):
            a = np.moveaxis(a, 0, -1)       # planar RGB
        return a
    from PIL import Image
    with Image.open(path) as im:
        if im.mode in _HIGH_DEPTH_PIL_MODES:
            return np.asarray(im)
        if im.mode == "L":
            return np.asarray(im)
        if im.mode != "RGB":
            im = im.convert("RGB")
        return np.asarray(im)


def image_header(path: Path) -> tuple[tuple[int, int], bool]:
    """((W, H), high_bit_depth) of an image file, reading only its header."""
    if path.suffix.lower() in TIFF_EXTENSIONS:
        import tifffile
        with tifffile.TiffFile(str(path)) as tf:
            page = tf.pages[0]
            shape = page.shape
            dtype = page.dtype
        if len(shape) == 3 and shape[0] in (3, 4) and shape[2] not in (1, 2, 3, 4):
            h, w = shape[1], shape[2]
        else:
            h, w = shape[0], shape[1]
        return (int(w), int(h)), needs_scaling(dtype)
    from PIL import Image
    with Image.open(path) as im:
        return im.size, im.mode in _HIGH_DEPTH_PIL_MODES


class FolderSource(FrameSource):
    """The image frames of a folder, in natural order of their names."""

    description = "folder"

    def __init__(self, path: Path):
        self.path = path
        try:
            entries = list(path.iterdir())
        except OSError as err:
            raise InputError(f"folder {path} could not be listed ({short_error(err)}); check its "
                             "permissions") from err
        files = [p for p in entries if p.is_file() and not p.name.startswith(".")
                 and is_frame_file(p)]
        if not files:
            videos = sorted(p.name for p in entries if p.suffix.lower() in CLIP_EXTENSIONS)
            hint = (f"; it holds video files ({', '.join(videos[:3])}): give one of those instead"
                    if videos else "; point to a folder of frames (.jpg .jpeg .png .bmp .tif) "
                                   "or to a video file")
            raise InputError(f"folder {path} contains no image frames{hint}")
        files.sort(key=lambda p: natural_key(p.name))
        size0 = None
        high = []
        for f in files:
            try:
                size, hb = image_header(f)
            except Exception as err:
                raise InputError(f"frame {f.name} in folder {path} is not a readable image "
                                 f"({short_error(err)}); remove or replace it") from err
            if size0 is None:
                size0 = size
            elif size != size0:
                raise InputError(
                    f"frame {f.name} in folder {path} is {size[0]}x{size[1]} but the first frame "
                    f"{files[0].name} is {size0[0]}x{size0[1]}; all frames must have the same size "
                    f"(resize or remove {f.name})")
            high.append(hb)
        self.files = files
        self.n = len(files)
        self.width, self.height = int(size0[0]), int(size0[1])
        self._scale = None
        if any(high):  # 16-bit / float frames: one range for the whole video
            def hi_frames():
                for f, hb in zip(files, high):
                    if hb:
                        yield self._raw(f)
            self._scale = value_range(hi_frames())

    def _raw(self, f: Path):
        try:
            return read_image_raw(f)
        except Exception as err:
            raise InputError(f"frame {f.name} in folder {self.path} could not be read "
                             f"({short_error(err)}); the file may be truncated - replace it"
                             ) from err

    def read(self, i):
        f = self.files[i]
        a = self._raw(f)
        try:
            return to_rgb8(a, self._scale)
        except ValueError as err:
            raise InputError(f"frame {f.name} in folder {self.path}: {err}; save it as grey, "
                             "RGB or RGBA") from err


class SingleImageSource(FolderSource):
    """One image file as a one-frame video."""

    description = "image"

    def __init__(self, path: Path):
        self.path = path
        try:
            size, hb = image_header(path)
        except Exception as err:
            raise InputError(f"image {path} could not be read ({short_error(err)}); check that "
                             "it is a complete, uncorrupted image") from err
        self.files = [path]
        self.n = 1
        self.width, self.height = int(size[0]), int(size[1])
        self._scale = value_range([self._raw(path)]) if hb else None

    def _raw(self, f):
        try:
            return read_image_raw(f)
        except Exception as err:
            raise InputError(f"image {f} could not be read ({short_error(err)}); the file may be "
                             "truncated - replace it") from err

