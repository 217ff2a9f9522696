"""The frame sources behind open_video: video files (ffmpeg), gifs, folders of frames
and tif stacks, each format read exactly and its broken files reported in one line."""
from __future__ import annotations

import subprocess
import threading

import imageio_ffmpeg
import numpy as np
import pytest
import tifffile
from PIL import Image

from corrflow_napari.errors import InputError
from corrflow_napari.io import open_video
from corrflow_napari.io.ffmpeg_source import FFmpegSource

from .media import (
    H,
    T,
    W,
    assert_one_line_naming,
    code_frame,
    decode_index,
    ramp_frames,
    write_with_ffmpeg,
)


@pytest.mark.parametrize("ext,codec,pix_fmt", [
    ("mp4", "libx264", "yuv420p"),
    ("avi", "mjpeg", "yuvj444p"),
    ("mov", "libx264", "yuv420p"),
    ("mkv", "ffv1", "bgr0"),
    ("webm", "libvpx-vp9", "yuv420p"),
])
def test_video_file_formats(tmp_path, ext, codec, pix_fmt):
    frames = ramp_frames()
    extra = ["-crf", "20", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8"] \
        if codec == "libvpx-vp9" else []
    p = write_with_ffmpeg(tmp_path / f"clip.{ext}", frames, fps=25, codec=codec,
                          pix_fmt=pix_fmt, extra=extra)
    v = open_video(p)
    assert v.shape == (T, H, W, 3) and v.dtype == np.uint8 and v.ndim == 4 and len(v) == T
    assert v.name == "clip" and v.path == p
    assert v.fps == pytest.approx(25.0)
    arr = np.asarray(v)
    assert arr.shape == (T, H, W, 3) and arr.dtype == np.uint8
    diff = np.abs(arr.astype(int) - frames.astype(int))
    if codec == "ffv1":
        assert diff.max() == 0                      # lossless
    else:
        assert diff.mean() < 4, diff.mean()
    # frame identity: brightness of the red channel grows with the index
    red = arr[..., 0].reshape(T, -1).mean(1)
    np.testing.assert_allclose(red, frames[..., 0].reshape(T, -1).mean(1), atol=4)
    v.close()


def test_single_frame_and_odd_size_video(tmp_path):
    one = write_with_ffmpeg(tmp_path / "one.mp4", ramp_frames(1), codec="libx264")
    v = open_video(one)
    assert v.shape == (1, H, W, 3)
    assert np.abs(v[0].astype(int) - ramp_frames(1)[0]).mean() < 4
    assert v[-1].shape == (H, W, 3)
    odd = ramp_frames(5, 37, 53)
    p = write_with_ffmpeg(tmp_path / "odd.mkv", odd, codec="ffv1", pix_fmt="bgr0")
    v = open_video(p)
    assert v.shape == (5, 37, 53, 3)
    np.testing.assert_array_equal(np.asarray(v), odd)


def ffmpeg_starts(monkeypatch) -> list:
    """The frames ffmpeg is (re)started at, recorded from now on."""
    starts = []
    orig_start = FFmpegSource._start
    monkeypatch.setattr(FFmpegSource, "_start",
                        lambda self, i: starts.append(i) or orig_start(self, i))
    return starts


def test_lazy_bounded_cache_and_linear_sequential_reads(tmp_path, monkeypatch):
    n = 300
    frames = np.stack([code_frame(t) for t in range(n)])
    p = write_with_ffmpeg(tmp_path / "long.mp4", frames, fps=30, extra=["-g", "30"])
    starts = ffmpeg_starts(monkeypatch)
    v = open_video(p)
    assert len(v) == n and v.cache_size <= 32
    starts.clear()
    seen = []
    for i in range(n):                      # sequential: one ffmpeg process, no re-seek
        seen.append(decode_index(v[i]))
        assert len(v._cache) <= v.cache_size
    assert seen == list(range(n))
    assert starts == []                     # sequential reading never restarted ffmpeg
    # iteration is sequential too
    starts.clear()
    assert sum(1 for _ in v) == n and len(starts) <= 1
    # random access gives exactly the frame sequential reading gives
    for i in (250, 3, 299, 120, 0, 121, 175):
        assert decode_index(v[i]) == i
    assert len(v._cache) <= v.cache_size


def test_backward_walk_seeks_once_per_block(tmp_path, monkeypatch):
    """A backward chain reads frames k, k-1, k-2, ...: one ffmpeg restart per block of
    frames (decoded forwards), not one per frame, and every frame is exactly right."""
    n = 120
    frames = np.stack([code_frame(t) for t in range(n)])
    p = write_with_ffmpeg(tmp_path / "walk.mp4", frames, fps=30, extra=["-g", "30"])
    starts = ffmpeg_starts(monkeypatch)
    v = open_video(p)
    starts.clear()
    seen = [decode_index(v[i]) for i in range(n - 1, -1, -1)]
    assert seen == list(range(n - 1, -1, -1))
    assert 1 < len(starts) <= -(-n // v._block) + 1, starts   # one seek per block
    assert len(v._cache) <= v.cache_size
    # a second thread walking forward meanwhile keeps its own direction
    out = []
    t = threading.Thread(target=lambda: out.extend(decode_index(v[i]) for i in range(40, 50)))
    t.start()
    t.join()
    assert out == list(range(40, 50))


def test_variable_frame_rate_random_access_is_exact(tmp_path):
    """Frames 0..29 at 25 fps, then twice as far apart: index/fps seeking would miss."""
    n = 60
    frames = np.stack([code_frame(t) for t in range(n)])
    p = write_with_ffmpeg(tmp_path / "vfr.mp4", frames, fps=25,
                          extra=["-vf", "setpts='if(lt(N,30),N,2*N)/25/TB'", "-fps_mode", "vfr",
                                 "-g", "10"])
    v = open_video(p)
    assert len(v) == n
    for i in (45, 5, 59, 31, 30, 29, 50):
        assert decode_index(v[i]) == i
    assert [decode_index(f) for f in v] == list(range(n))


def test_error_truncated_video(tmp_path):
    frames = ramp_frames(30, 64, 96) ^ np.random.default_rng(4).integers(
        0, 40, (30, 64, 96, 3), dtype=np.uint8)           # noise: a bigger file
    plain = write_with_ffmpeg(tmp_path / "plain.mp4", frames)
    fast = write_with_ffmpeg(tmp_path / "fast.mp4", frames, extra=["-movflags", "+faststart"])
    mkv = write_with_ffmpeg(tmp_path / "whole.mkv", frames)
    for src in (plain, fast, mkv):
        data = src.read_bytes()
        cut = tmp_path / f"cut_{src.name}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(InputError) as e:
            open_video(cut)
        assert_one_line_naming(e, cut.name)


def test_error_zero_frames_video(tmp_path):
    p = tmp_path / "zero.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc=size=64x48:rate=10", "-frames:v", "0", "-c:v", "libx264",
                    str(p)], check=True, capture_output=True)
    with pytest.raises(InputError) as e:
        open_video(p)
    assert_one_line_naming(e, "zero.mp4")
    assert "zero frames" in str(e.value)


def test_gif_reads_exact_palette_colours(tmp_path):
    cols = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    frames = np.zeros((4, 20, 30, 3), np.uint8)
    for i, c in enumerate(cols):
        frames[i] = c
        frames[i, 5:10, 5:25] = (255, 255, 255)
    ims = [Image.fromarray(f) for f in frames]
    p = tmp_path / "anim.gif"
    ims[0].save(p, save_all=True, append_images=ims[1:], duration=100, loop=0)
    v = open_video(p)
    assert v.shape == (4, 20, 30, 3) and v.fps == pytest.approx(10.0)
    np.testing.assert_array_equal(np.asarray(v), frames)
    np.testing.assert_array_equal(v[2], frames[2])      # backward seek after reading all


def test_folder_of_jpg_natural_order_ignores_other_files(tmp_path):
    frames = ramp_frames(11)
    d = tmp_path / "frames"
    d.mkdir()
    for i, f in enumerate(frames):            # f0.jpg ... f10.jpg: natural sort
        Image.fromarray(f).save(d / f"f{i}.jpg", quality=95)
    (d / "notes.txt").write_text("not a frame")
    (d / "._f0.jpg").write_bytes(b"macOS resource fork, not an image")
    v = open_video(d)
    assert v.shape == (11, H, W, 3) and v.name == "frames" and v.fps is None
    arr = np.asarray(v)
    assert np.abs(arr.astype(int) - frames).mean() < 3
    red = arr[..., 0].reshape(11, -1).mean(1)
    assert np.all(np.diff(red) > 5)            # f10 comes last, not after f1


def test_folder_of_png_rgba_and_grey(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (3, H, W, 4), dtype=np.uint8)
    d = tmp_path / "rgba"
    d.mkdir()
    for i, f in enumerate(rgba):
        Image.fromarray(f).save(d / f"{i:05d}.png")
    v = open_video(d)
    np.testing.assert_array_equal(np.asarray(v), rgba[..., :3])
    g = tmp_path / "grey"
    g.mkdir()
    grey = rng.integers(0, 256, (2, H, W), dtype=np.uint8)
    for i, f in enumerate(grey):
        Image.fromarray(f).save(g / f"{i:05d}.png")
    np.testing.assert_array_equal(np.asarray(open_video(g)), np.repeat(grey[..., None], 3, 3))


def test_folder_of_16bit_png_rescaled_per_video(tmp_path):
    d = tmp_path / "sixteen"
    d.mkdir()
    a = np.zeros((2, 10, 12), np.uint16)
    a[0, :, :6] = 1000
    a[1, :, :6] = 4000
    a[1, 0, 0] = 40000                          # the brightest pixel of the whole video
    for i, f in enumerate(a):
        Image.fromarray(f).save(d / f"{i}.png")
    v = open_video(d)
    arr = np.asarray(v)
    assert arr.max() == 255 and arr[1, 0, 0, 0] == 255
    assert arr[0, 0, 0, 0] == round(1000 / 40000 * 255)
    assert arr[1, 5, 0, 0] == round(4000 / 40000 * 255)
    assert arr[0, 0, 11, 0] == 0


def test_error_folders(tmp_path):
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(InputError) as e:
        open_video(empty)
    assert_one_line_naming(e, "empty_dir")
    assert "no image" in str(e.value)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(mixed / "00000.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(mixed / "00001.png")
    Image.fromarray(np.zeros((21, 30, 3), np.uint8)).save(mixed / "00002.png")
    with pytest.raises(InputError) as e:
        open_video(mixed)
    assert_one_line_naming(e, "00002.png")
    msg = str(e.value)
    assert "30x21" in msg and "30x20" in msg and "00000.png" in msg
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(broken / "00000.png")
    (broken / "00001.png").write_text("not a png")
    with pytest.raises(InputError) as e:
        open_video(broken)
    assert_one_line_naming(e, "00001.png")


def test_tif_stack_grey_thw(tmp_path):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (5, 20, 30), dtype=np.uint8)
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, a)
    v = open_video(p)
    assert v.shape == (5, 20, 30, 3) and v.name == "stack"
    np.testing.assert_array_equal(np.asarray(v), np.repeat(a[..., None], 3, 3))


def test_tif_stack_rgba_and_compressed_pages(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (4, 16, 18, 4), dtype=np.uint8)
    p = tmp_path / "rgba.tif"
    tifffile.imwrite(p, a, photometric="rgb", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(np.asarray(open_video(p)), a[..., :3])
    # compressed multi-page file (no memory map: frames are read page by page)
    b = rng.integers(0, 256, (6, 16, 18, 3), dtype=np.uint8)
    q = tmp_path / "zlib.tiff"
    tifffile.imwrite(q, b, photometric="rgb", compression="zlib")
    v = open_video(q)
    assert v._src._mm is None
    assert v.shape == (6, 16, 18, 3)
    np.testing.assert_array_equal(v[4], b[4])
    np.testing.assert_array_equal(np.asarray(v), b)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tif_stack_16bit_rescaled_per_video(tmp_path, compression):
    a = np.zeros((3, 10, 10), np.uint16)
    a[0] = 100
    a[0, :5] = 1100                 # frame 0 has contrast 1000
    a[1] = 100
    a[1, :5] = 2100                 # frame 1 has twice that contrast
    a[2, 3, 3] = 10000              # the brightest pixel of the stack
    a[2, 0, 0] = 100
    p = tmp_path / "sixteen.tif"
    tifffile.imwrite(p, a, compression=compression)
    v = open_video(p)
    arr = np.asarray(v).astype(int)
    assert arr.max() == 255 and arr[2, 3, 3, 0] == 255         # global max -> 255
    assert arr.min() == 0                                       # global min -> 0
    c0 = arr[0, 0, 0, 0] - arr[0, 9, 0, 0]
    c1 = arr[1, 0, 0, 0] - arr[1, 9, 0, 0]
    assert c0 > 0 and abs(c1 / c0 - 2.0) < 0.15                 # relative contrast kept
    np.testing.assert_array_equal(arr[..., 0], arr[..., 2])


def test_tif_float_and_single_image(tmp_path):
    a = np.linspace(-1.0, 3.0, 2 * 6 * 7, dtype=np.float32).reshape(2, 6, 7)
    p = tmp_path / "float.tif"
    tifffile.imwrite(p, a)
    arr = np.asarray(open_video(p))
    assert arr[0, 0, 0, 0] == 0 and arr[1, -1, -1, 0] == 255
    img = tmp_path / "frame.png"
    Image.fromarray(ramp_frames(1)[0]).save(img)
    v = open_video(img)
    assert v.shape == (1, H, W, 3)
    np.testing.assert_array_equal(v[0], ramp_frames(1)[0])
