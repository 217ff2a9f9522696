"""The one table of supported inputs, and napari.yaml's reader patterns that must match it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import corrflow_napari
from corrflow_napari.io import (
    CLIP_EXTENSIONS,
    FORMATS,
    IMAGE_EXTENSIONS,
    READER_EXTENSIONS,
    TIFF_EXTENSIONS,
    VIDEO_EXTENSIONS,
    file_format,
    is_frame_folder,
    open_video,
)


def test_table_is_lower_case_dotted_and_consistent():
    for exts in FORMATS.values():
        assert exts and all(e.startswith(".") and e == e.lower() for e in exts)
    assert set(TIFF_EXTENSIONS) <= set(IMAGE_EXTENSIONS)          # a tif is also a frame
    assert not set(CLIP_EXTENSIONS) & set(IMAGE_EXTENSIONS)
    assert set(READER_EXTENSIONS) == set(CLIP_EXTENSIONS) | set(TIFF_EXTENSIONS)
    assert {".mpg", ".ts", ".mp4", ".webm"} <= set(VIDEO_EXTENSIONS)
    assert ".webp" in IMAGE_EXTENSIONS


@pytest.mark.parametrize("name,kind", [
    ("a.mp4", "video"), ("A.MPG", "video"), ("clip.ts", "video"), ("x.gif", "gif"),
    ("s.tif", "tif stack"), ("s.TIFF", "tif stack"), ("f.png", "image"), ("f.webp", "image"),
    ("notes.txt", None), ("noext", None),
])
def test_file_format(name, kind):
    assert file_format(name) == kind
    assert file_format(Path("/some/dir") / name) == kind


def test_is_frame_folder(tmp_path):
    assert not is_frame_folder(tmp_path)                          # empty
    (tmp_path / "._f0.png").write_bytes(b"hidden")
    (tmp_path / "clip.mp4").write_bytes(b"video")
    assert not is_frame_folder(tmp_path)                          # hidden / not frames
    (tmp_path / "f0.WEBP").write_bytes(b"frame")
    assert is_frame_folder(tmp_path)
    assert not is_frame_folder(tmp_path / "clip.mp4")             # a file
    assert not is_frame_folder(tmp_path / "missing")


def test_napari_yaml_reader_patterns_match_the_table():
    manifest = Path(corrflow_napari.__file__).with_name("napari.yaml")
    readers = yaml.safe_load(manifest.read_text())["contributions"]["readers"]
    assert len(readers) == 1 and readers[0]["accepts_directories"] is True
    patterns = readers[0]["filename_patterns"]
    assert len(patterns) == len(set(patterns))
    assert set(patterns) == {f"*{e}" for e in READER_EXTENSIONS}


def test_webp_frames_open(tmp_path):
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (3, 12, 16, 3), dtype=np.uint8)
    d = tmp_path / "webp"
    d.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(d / f"{i:03d}.webp", lossless=True)
    v = open_video(d)
    assert v.shape == (3, 12, 16, 3)
    np.testing.assert_array_equal(np.asarray(v), frames)
    rgba = np.dstack([frames[0], np.full((12, 16), 128, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "one.webp", lossless=True)
    np.testing.assert_array_equal(open_video(tmp_path / "one.webp")[0], frames[0])
