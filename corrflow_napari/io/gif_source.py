"""Frames of an animated GIF (Pillow)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .messages import short_error
from .source import FrameSource


class GifSource(FrameSource):
    """The frames of an animated GIF; fps from its frame duration."""

    description = "gif"

    def __init__(self, path: Path):
        from PIL import Image
        try:
            im = Image.open(path)
            im.load()
            n = int(getattr(im, "n_frames", 1))
        except Exception as err:
            raise InputError(f"gif {path} could not be read ({short_error(err)}); check that "
                             "the file is a complete, uncorrupted GIF") from err
        if n < 1:
            raise InputError(f"gif {path} has no frames; give an animation with at least one frame")
        self._im = im
        self.path = path
        self.n = n
        self.width, self.height = im.size
        dur = im.info.get("duration") or 0
        self.fps = 1000.0 / dur if dur and dur > 0 else None

    def read(self, i):
        try:
            self._im.seek(i)
            return np.asarray(self._im.convert("RGB"))
        except Exception as err:
            raise InputError(f"gif {self.path}: frame {i} could not be decoded "
                             f"({short_error(err)}); the file may be truncated or corrupt"
                             ) from err

    def close(self):
        try:
            self._im.close()
        except Exception:  # pragma: no cover
            pass

