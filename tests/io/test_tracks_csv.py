"""Track CSV files: write_tracks_csv rows read back by read_points_csv."""
from __future__ import annotations

import numpy as np
import pytest

from corrflow_napari.errors import InputError
from corrflow_napari.io import read_points_csv, write_tracks_csv


def test_round_trip(tmp_path):
    path = tmp_path / "out" / "tracks.csv"
    pos = np.array([[[1.0, 2.0], [3.5, 4.25]], [[5.0, 6.0], [7.0, 8.0]]])   # (T=2, N=2, y x)
    vis = np.array([[True, False], [True, True]])
    write_tracks_csv(path, ["a", "b"], pos, vis, frames=[10, 11])
    lines = path.read_text().splitlines()
    assert lines[0] == "track_id,t,y,x,visible"
    assert lines[1:3] == ["a,10,1.00,2.00,1", "b,10,3.50,4.25,0"]
    assert [p.name for p in path.parent.iterdir()] == ["tracks.csv"]       # no temp left
    write_tracks_csv(path, ["a", "b"], pos[:1], vis[:1], frames=[10])     # one row per id
    ids, pts = read_points_csv(path)
    assert ids == ["a", "b"]
    np.testing.assert_allclose(pts, [[10, 1, 2], [10, 3.5, 4.25]])


def test_read_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_points_csv(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("track_id,t,y\na,0,1\n")
    with pytest.raises(InputError, match="lacks column"):
        read_points_csv(bad)
    bad.write_text("track_id,t,y,x\na,0,1,x\n")
    with pytest.raises(InputError, match="non-numeric"):
        read_points_csv(bad)
    bad.write_text("track_id,t,y,x\na,0,1,2\nb,0,5,5\na,0,1,3\n")
    with pytest.raises(InputError, match="repeats track_id a on frame 0"):
        read_points_csv(bad)


def test_a_repeated_id_on_other_frames_is_a_keyframe(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("track_id,t,y,x\na,0,1,2\nb,0,5,5\na,4,3,3\n")
    ids, pts = read_points_csv(path)
    assert ids == ["a", "b", "a"]
    np.testing.assert_allclose(pts[2], [4, 3, 3])
