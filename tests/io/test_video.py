"""Tests for corrflow_napari.io: reading videos/folders/stacks lazily, masks IO,
writing videos and overlays.  Every input file is generated in tmp_path."""
from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import tifffile
from PIL import Image

from corrflow_napari import io as vmod
from corrflow_napari.errors import InputError
from corrflow_napari.io import (
    Video,
    as_video,
    davis_palette,
    open_video,
    overlay,
    read_mask,
    write_indexed_png,
    write_video,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

T, H, W = 12, 48, 64


# --------------------------------------------------------------------------- helpers

def ramp_frames(t=T, h=H, w=W):
    """Smooth frames (codec friendly) whose mean brightness grows with the index."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        out[i, ..., 0] = (20 + 15 * i) % 240
        out[i, ..., 1] = (xx * 200 // max(w - 1, 1)).astype(np.uint8)
        out[i, ..., 2] = (yy * 200 // max(h - 1, 1)).astype(np.uint8)
    return out


def write_with_ffmpeg(path, frames, fps=25, codec="libx264", extra=None, pix_fmt="yuv420p"):
    """Write frames with imageio-ffmpeg directly (independent of write_video)."""
    t, h, w = frames.shape[:3]
    gen = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec=codec,
                                      pix_fmt_out=pix_fmt, macro_block_size=1,
                                      quality=None if codec in ("ffv1", "libvpx-vp9") else 9,
                                      ffmpeg_log_level="error", output_params=extra or [])
    gen.send(None)
    for f in frames:
        gen.send(np.ascontiguousarray(f))
    gen.close()
    return path


def assert_one_line_naming(err, name):
    msg = str(err.value)
    assert "\n" not in msg
    assert name in msg, msg


# index <-> frame code for seek tests: three blocks with base-7 digits
def code_frame(t, h=64, w=64):
    f = np.zeros((h, w, 3), np.uint8)
    for k, dg in enumerate((t // 49, (t // 7) % 7, t % 7)):
        f[:, k * 21:(k + 1) * 21] = dg * 36
    return f


def decode_index(f):
    d = [int(round(f[8:56, k * 21 + 5:(k + 1) * 21 - 5].mean() / 36)) for k in range(3)]
    return d[0] * 49 + d[1] * 7 + d[2]


# --------------------------------------------------------------------------- palette

def test_davis_palette_standard_colours():
    pal = davis_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0]
    assert pal[3].tolist() == [128, 128, 0]
    assert pal[4].tolist() == [0, 0, 128]
    assert pal[7].tolist() == [128, 128, 128]
    assert pal[8].tolist() == [64, 0, 0]
    assert pal[15].tolist() == [192, 128, 128]    # VOC "person"
    assert pal[255].tolist() == [224, 224, 192]   # VOC "void"
    assert len({tuple(c) for c in pal}) == 256
    assert davis_palette(5).shape == (5, 3)
    np.testing.assert_array_equal(davis_palette(5), pal[:5])


# --------------------------------------------------------------------------- video files

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


def test_lazy_bounded_cache_and_linear_sequential_reads(tmp_path, monkeypatch):
    n = 300
    frames = np.stack([code_frame(t) for t in range(n)])
    p = write_with_ffmpeg(tmp_path / "long.mp4", frames, fps=30, extra=["-g", "30"])
    starts = []
    orig_start = vmod._FFmpegSource._start
    monkeypatch.setattr(vmod._FFmpegSource, "_start",
                        lambda self, i: starts.append(i) or orig_start(self, i))
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


# --------------------------------------------------------------------------- indexing

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


# --------------------------------------------------------------------------- folders

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


# --------------------------------------------------------------------------- tif stacks

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


# --------------------------------------------------------------------------- errors

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


# --------------------------------------------------------------------------- masks

def test_read_indexed_png_mask(tmp_path):
    lab = np.zeros((20, 30), np.uint8)
    lab[2:8, 3:9] = 3
    lab[10:15, 20:28] = 7
    pal = davis_palette(256).copy()
    pal[3] = (10, 20, 30)
    p = tmp_path / "m.png"
    im = Image.fromarray(lab)
    im.putpalette(pal.reshape(-1).tolist())
    assert im.mode == "P"
    im.save(p)
    ids, palette = read_mask(p, shape=(20, 30))
    assert ids.dtype == np.int32 and ids.shape == (20, 30)
    np.testing.assert_array_equal(ids, lab)
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[3].tolist() == [10, 20, 30] and palette[7].tolist() == pal[7].tolist()


def test_read_grey_masks(tmp_path):
    lab = np.zeros((12, 14), np.uint8)
    lab[1:4, 1:4] = 2
    lab[6:9, 6:9] = 5
    Image.fromarray(lab).save(tmp_path / "l.png")
    ids, pal = read_mask(tmp_path / "l.png")
    np.testing.assert_array_equal(ids, lab)
    assert pal is None
    big = lab.astype(np.uint16) * 100                          # ids up to 500
    Image.fromarray(big).save(tmp_path / "i16.png")
    ids, pal = read_mask(tmp_path / "i16.png")
    np.testing.assert_array_equal(ids, big)
    assert pal is None
    tifffile.imwrite(tmp_path / "m.tif", big)
    ids, pal = read_mask(tmp_path / "m.tif", shape=(12, 14))
    np.testing.assert_array_equal(ids, big)


def test_read_rgb_mask_with_davis_colours(tmp_path):
    pal = davis_palette()
    lab = np.zeros((16, 16), np.int32)
    lab[:4] = 1
    lab[8:, 8:] = 12
    lab[5, 5] = 3
    Image.fromarray(pal[lab]).save(tmp_path / "rgb.png")
    ids, palette = read_mask(tmp_path / "rgb.png")
    np.testing.assert_array_equal(ids, lab)
    np.testing.assert_array_equal(palette, pal)


def test_read_rgb_mask_with_arbitrary_colours(tmp_path):
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[6:, 6:] = (250, 10, 200)           # appears second in raster order
    rgb[1:3, 1:3] = (17, 230, 90)          # appears first
    Image.fromarray(rgb).save(tmp_path / "c.png")
    ids, palette = read_mask(tmp_path / "c.png")
    assert ids[0, 0] == 0 and ids[1, 1] == 1 and ids[7, 7] == 2
    assert set(np.unique(ids)) == {0, 1, 2}
    assert palette[1].tolist() == [17, 230, 90] and palette[2].tolist() == [250, 10, 200]
    # RGBA: fully transparent pixels are background
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = (255, 255, 255)
    rgba[2:5, 2:5, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    ids, _ = read_mask(tmp_path / "a.png")
    assert ids.sum() == 9 and ids[3, 3] == 1


def test_read_mask_errors(tmp_path):
    yy, xx = np.mgrid[0:64, 0:64]
    aa = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).astype(np.uint8)   # > 255 colours
    Image.fromarray(aa).save(tmp_path / "aa.png")
    with pytest.raises(InputError) as e:
        read_mask(tmp_path / "aa.png")
    assert_one_line_naming(e, "aa.png")
    assert "indexed PNG" in str(e.value)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(InputError) as e:
        read_mask(tmp_path / "small.png", shape=(40, 60))
    assert_one_line_naming(e, "small.png")
    assert "30x20" in str(e.value) and "60x40" in str(e.value)
    with pytest.raises(InputError) as e:
        read_mask(tmp_path / "missing.png")
    assert_one_line_naming(e, "missing.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(InputError) as e:
        read_mask(tmp_path / "text.png")
    assert_one_line_naming(e, "text.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "lossy.jpg")
    with pytest.raises(InputError) as e:
        read_mask(tmp_path / "lossy.jpg")
    assert_one_line_naming(e, "lossy.jpg")


def test_write_indexed_png_round_trip(tmp_path):
    lab = np.zeros((9, 11), np.int64)
    lab[1:3, 1:3] = 3
    lab[5:8, 4:9] = 7
    p = tmp_path / "out" / "00000.png"
    write_indexed_png(p, lab)                          # default DAVIS palette, creates folder
    with Image.open(p) as im:
        assert im.mode == "P"
    ids, pal = read_mask(p)
    np.testing.assert_array_equal(ids, lab)
    np.testing.assert_array_equal(pal, davis_palette())
    custom = np.array([[0, 0, 0], [1, 2, 3], [4, 5, 6], [200, 100, 50]], np.uint8)
    write_indexed_png(p, lab, palette=custom)          # overwrite in place
    ids, pal = read_mask(p)
    np.testing.assert_array_equal(ids, lab)
    assert pal[3].tolist() == [200, 100, 50] and pal[7].tolist() == davis_palette()[7].tolist()
    write_indexed_png(p, lab, palette=np.array([[0, 0, 0], [1.0, 0.5, 0.0]]))  # 0..1 floats
    assert read_mask(p)[1][1].tolist() == [255, 128, 0]
    with pytest.raises(InputError) as e:
        write_indexed_png(tmp_path / "big.png", lab * 100)
    assert_one_line_naming(e, "big.png")
    assert not (tmp_path / "big.png").exists()
    assert sorted(x.name for x in (tmp_path / "out").iterdir()) == ["00000.png"]   # no temp left


# --------------------------------------------------------------------------- writing

def test_write_video_mp4_and_gif(tmp_path):
    frames = ramp_frames(9, 37, 53)                    # odd size
    frames[4] = frames[3]                              # identical consecutive frames
    mp4 = tmp_path / "o.mp4"
    write_video(mp4, frames, fps=12)
    v = open_video(mp4)
    assert len(v) == 9 and v.fps == pytest.approx(12.0)
    assert v.shape[1:3] == (38, 54)                    # padded to even for H.264
    assert np.abs(np.asarray(v)[:, :37, :53].astype(int) - frames).mean() < 4
    gif = tmp_path / "o.gif"
    write_video(gif, open_video(mp4), fps=10)          # from a lazy Video
    g = open_video(gif)
    assert len(g) == 9 and g.shape[1:3] == (38, 54) and g.fps == pytest.approx(10.0)
    assert np.abs(np.asarray(g).astype(int) - np.asarray(v)).mean() < 12
    write_video(tmp_path / "grey.gif", frames[..., 0], fps=5)
    assert len(open_video(tmp_path / "grey.gif")) == 9
    with pytest.raises(InputError) as e:
        write_video(tmp_path / "o.xyz", frames)
    assert_one_line_naming(e, "o.xyz")
    with pytest.raises(InputError):
        write_video(tmp_path / "none.mp4", frames[:0])
    assert sorted(x.name for x in tmp_path.iterdir()) == ["grey.gif", "o.gif", "o.mp4"]


def test_overlay_lazy_and_colours(tmp_path, monkeypatch):
    frames = np.full((3, 10, 12, 3), 100, np.uint8)
    labels = np.zeros((3, 10, 12), np.int32)
    labels[:, 2:8, 3:9] = 1
    labels[2, 0, 0] = 2
    v = Video.from_array(frames)
    monkeypatch.setattr(Video, "__array__", lambda *a, **k: pytest.fail("read all frames"))
    out = overlay(v, labels, alpha=0.5)
    assert out.shape == (3, 10, 12, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 9, 11], 100)                  # background untouched
    np.testing.assert_array_equal(out[0, 4, 5], [114, 50, 50])         # 0.5*100 + 0.5*(128,0,0)
    np.testing.assert_array_equal(out[0, 2, 3], [128, 0, 0])           # outline, full colour
    out2 = overlay(frames, labels, palette=[[0, 0, 0], [0, 0, 255]], alpha=1.0, outline=False)
    np.testing.assert_array_equal(out2[1, 4, 5], [0, 0, 255])
    with pytest.raises(InputError):
        overlay(frames, labels[:2])


# --------------------------------------------------------------------------- real data

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
