"""The lazy Video: numpy-like indexing, bounded cache, thread-safe reads, open_video
dispatch and its errors, and the real shared clips."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile

from corrflow_napari.errors import InputError
from corrflow_napari.io import Video, as_video, open_video, read_mask

from .media import (
    SHARED,
    H,
    T,
    W,
    assert_one_line_naming,
    code_frame,
    decode_index,
    ramp_frames,
    write_with_ffmpeg,
)


def test_indexing_like_numpy():
    frames = ramp_frames()
    v = Video.from_array(frames[..., 0])            # grey (T,H,W) -> RGB
    grey = np.repeat(frames[..., :1], 3, axis=3)
    np.testing.assert_array_equal(v[3], grey[3])
    np.testing.assert_array_equal(v[-1], grey[-1])
    np.testing.assert_array_equal(v[np.int64(2)], grey[2])
    np.testing.assert_array_equal(v[2:5], grey[2:5])
    np.testing.assert_array_equal(v[::4], grey[::4])
    np.testing.assert_array_equal(v[[5, 1, 5]], grey[[5, 1, 5]])
    np.testing.assert_array_equal(v[np.array([0, 11])], grey[[0, 11]])
    mask = np.zeros(T, bool)
    mask[[1, 7]] = True
    np.testing.assert_array_equal(v[mask], grey[mask])
    np.testing.assert_array_equal(v[4, 10:20, 3:9], grey[4, 10:20, 3:9])
    np.testing.assert_array_equal(v[1:3, :, 5, 0], grey[1:3, :, 5, 0])
    np.testing.assert_array_equal(v[2, ..., 1], grey[2, ..., 1])
    np.testing.assert_array_equal(v[..., 0], grey[..., 0])
    np.testing.assert_array_equal(v[(slice(None), 0)], grey[:, 0])
    assert v[5:2].shape == (0, H, W, 3)
    np.testing.assert_array_equal(np.asarray(v), grey)
    assert np.asarray(v, dtype=np.float32).dtype == np.float32
    assert sum(1 for _ in v) == T
    with pytest.raises(IndexError):
        v[T]
    with pytest.raises(IndexError):
        v[-T - 1]
    # returned frames are copies: modifying them does not change the video
    f = v[0]
    f[:] = 7
    np.testing.assert_array_equal(v[0], grey[0])


def test_from_array_conversions():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (3, 8, 9, 4), dtype=np.uint8)
    v = Video.from_array(rgba, name="rgba")
    assert v.shape == (3, 8, 9, 3) and v.name == "rgba"
    np.testing.assert_array_equal(np.asarray(v), rgba[..., :3])
    one = rng.integers(0, 256, (2, 5, 6, 1), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(Video.from_array(one)), np.repeat(one, 3, 3))
    # float: one range for the whole video
    fl = np.zeros((2, 4, 4), np.float32)
    fl[0] = 0.25
    fl[1, 0, 0] = 1.0
    out = np.asarray(Video.from_array(fl))
    assert out[1, 0, 0, 0] == 255 and out[1, 1, 1, 0] == 0 and out[0, 0, 0, 0] == 64
    assert as_video(v) is v
    assert as_video(rgba).shape == (3, 8, 9, 3)
    for bad in (np.zeros((4, 5)), np.zeros((2, 3, 4, 5)), np.zeros((0, 4, 4, 3), np.uint8)):
        with pytest.raises(InputError):
            Video.from_array(bad)


def test_concurrent_reads_are_consistent(tmp_path):
    n = 24
    frames = np.stack([code_frame(t) for t in range(n)])
    v = open_video(write_with_ffmpeg(tmp_path / "c.mp4", frames, extra=["-g", "10"]),
                   cache_size=2)
    errors = []

    def worker(order):
        try:
            for i in order:
                if decode_index(v[i]) != i:
                    errors.append(i)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    ths = [threading.Thread(target=worker, args=(list(range(n)),)),
           threading.Thread(target=worker, args=(list(range(n - 1, -1, -4)),))]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert errors == []


def test_error_missing_path(tmp_path):
    with pytest.raises(InputError) as e:
        open_video(tmp_path / "nope.mp4")
    assert_one_line_naming(e, "nope.mp4")
    assert "does not exist" in str(e.value)


def test_error_not_a_video_and_unknown_extension(tmp_path):
    for name in ("fake.mp4", "fake.avi", "fake.gif", "fake.tif"):
        p = tmp_path / name
        p.write_text("this is a text file, not a video\n" * 20)
        with pytest.raises(InputError) as e:
            open_video(p)
        assert_one_line_naming(e, name)
    p = tmp_path / "data.xyz"
    p.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError) as e:
        open_video(p)
    assert_one_line_naming(e, "data.xyz")
    assert "extension" in str(e.value)
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((2, 3, 2, 8, 9), np.uint8))
    with pytest.raises(InputError) as e:
        open_video(tmp_path / "five.tif")
    assert_one_line_naming(e, "five.tif")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as e:
        open_video(empty)
    assert_one_line_naming(e, "empty.mp4")


def test_real_clip_and_davis_sequence():
    clip = SHARED / "clips" / "bikes.mp4"
    davis = SHARED / "davis2016-dev"
    if not clip.exists() or not davis.exists():
        pytest.skip(f"shared test data not found at {SHARED}")
    v = open_video(clip)
    assert v.shape[0] == 250 and v.fps == pytest.approx(25.0)
    last = v[249]
    for _f in v:                 # sequential decode of the whole clip, bounded cache
        pass
    assert len(v._cache) <= v.cache_size
    np.testing.assert_array_equal(v[249], last)
    seqs = sorted((davis / "JPEGImages" / "480p").iterdir())
    seq = seqs[0]
    d = open_video(seq)
    assert d.shape[1:] == (480, 854, 3)
    ann = sorted((davis / "Annotations" / "480p" / seq.name).glob("*.png"))[0]
    ids, pal = read_mask(ann, shape=d.shape)
    assert ids.shape == (480, 854) and ids.max() >= 1
