"""Atomic writes: the target is replaced whole, a failed write leaves no temp file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from corrflow_napari.io import write_json_atomic
from corrflow_napari.io.atomic import atomic_path


def test_atomic_path_replaces_or_cleans_up(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.suffix == ".txt"
        tmp.write_text("new")
        assert target.read_text() == "old"          # untouched until the block ends
    assert target.read_text() == "new"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_json_atomic(tmp_path):
    path = tmp_path / "runs" / "results.json"                  # folder created
    write_json_atomic(path, {"j": np.float32(0.5), "n": np.int64(3), "p": tmp_path, "l": [1]})
    got = json.loads(path.read_text())
    assert got == {"j": 0.5, "n": 3, "p": str(tmp_path), "l": [1]}
    assert path.read_text().startswith("{\n \"j\"")             # indent=1
    with pytest.raises(ValueError):                            # circular: nothing written
        d = {}
        d["self"] = d
        write_json_atomic(path, d)
    assert json.loads(path.read_text()) == got
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]
