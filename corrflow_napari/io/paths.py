"""Checking input and output paths, with one-line :class:`InputError` messages."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .messages import short_error


def as_path(path) -> Path:
    """A str / PathLike as a :class:`Path` (``~`` expanded); anything else is an InputError."""
    if isinstance(path, Path):
        return path.expanduser()
    if isinstance(path, (str, os.PathLike)):
        return Path(os.fspath(path)).expanduser()
    raise InputError(f"expected a file or folder path, got {type(path).__name__}; "
                     "give the path of a video, a folder of frames or a tif stack")


def prepare_output(path, what: str) -> Path:
    """The path of an output file ``what`` (e.g. "mask"), its folder created."""
    p = as_path(path)
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create folder {p.parent} for {what} {p.name} "
                         f"({short_error(err)}); check the path and permissions") from err
    return p
