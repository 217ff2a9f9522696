"""Atomic file writes: write a hidden temp file next to the target, then ``os.replace``.

A reader never sees a half-written file, and an error or Ctrl+C mid-write leaves the old
file (if any) in place and no temp file behind.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError


def tmp_sibling(path: Path) -> Path:
    """Create (empty, with normal permissions) a hidden temp file next to ``path`` with
    the same extension, and return its path."""
    parent = path.parent
    for _ in range(100):
        cand = parent / f".{path.stem}.tmp-{os.getpid()}-{os.urandom(4).hex()}{path.suffix}"
        try:
            fd = os.open(cand, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return cand
    raise InputError(  # pragma: no cover
        f"cannot create a temporary file next to {path}; check the folder")


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """``with atomic_path(p) as tmp:`` write the file ``tmp``; when the block ends
    normally ``tmp`` replaces ``p``, when it raises (Ctrl+C included) ``tmp`` is deleted.
    The folder of ``p`` must exist."""
    path = Path(path)
    tmp = tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def jsonable(o: Any) -> Any:
    """``json.dumps`` fallback: numpy integers and floats as numbers, anything else as
    its ``str``."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    return str(o)


def write_json_atomic(path, obj: Any, *, indent: int | None = 1,
                      default: Callable[[Any], Any] = jsonable) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (its folder is created).  Values JSON
    does not know go through ``default`` (numpy scalars become numbers, the rest str)."""
    path = Path(path)
    text = json.dumps(obj, indent=indent, default=default)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
