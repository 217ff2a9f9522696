"""Reading and writing video, and reading/writing label masks.

A video in memory is ``(T, H, W, 3) uint8`` RGB.  :func:`open_video` returns a lazy
:class:`Video` that decodes frames on demand and keeps only a small LRU cache, so long
videos never have to fit in memory.  Supported inputs:

* video files (``.mp4 .avi .mov .mkv .webm`` ...), decoded with the ffmpeg binary that
  ships with imageio-ffmpeg.  At open, one streaming pass over the file (ffmpeg decoding
  to a null sink, nothing is kept) gives the exact frame count and each frame's
  timestamp, so random access can seek to the right frame even for variable frame rate
  video; sequential reads reuse one running ffmpeg process;
* ``.gif`` files (Pillow);
* folders of frames (``.jpg .jpeg .png .bmp .tif .tiff``, natural sort by name:
  ``f2.png`` comes before ``f10.png``; zero-padded names sort as usual);
* tif stacks (multi-page, or one ``(T,H,W)`` / ``(T,H,W,C)`` array), read page by page
  or through a memory map.

Grey input is replicated to 3 channels, alpha is dropped, and 16-bit / float / other
non-uint8 input is rescaled with one (min, max) range for the whole video, so the
relative brightness of frames is preserved.

Masks: :func:`read_mask` reads indexed, grey or RGB(A) PNG/TIF masks into integer ids;
:func:`write_indexed_png` writes DAVIS-style indexed PNGs atomically.

All bad-input problems raise :class:`corrflow_napari.errors.InputError` with a one-line
message naming the file, the problem and what to do.
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = [
    "Video",
    "open_video",
    "as_video",
    "read_mask",
    "write_indexed_png",
    "davis_palette",
    "write_video",
    "overlay",
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "read_points_csv",
    "write_tracks_csv",
]

#: extensions decoded with ffmpeg
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg",
                    ".wmv", ".flv", ".ogv", ".3gp", ".ts", ".mts", ".m2ts")
#: extensions of single frames inside a folder of frames
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
TIFF_EXTENSIONS = (".tif", ".tiff")
GIF_EXTENSIONS = (".gif",)

_HIGH_DEPTH_PIL_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_CACHE_BYTES = 512 * 2**20          # the frame cache never holds more than this
_DEFAULT_CACHE_FRAMES = 32


# --------------------------------------------------------------------------- helpers

def _short(err: BaseException, limit: int = 200) -> str:
    """A one-line, bounded description of a library exception for a user message."""
    text = str(err).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # ffmpeg dumps many lines; the most useful ones mention an error
    for ln in lines:
        low = ln.lower()
        if any(w in low for w in ("invalid data", "moov atom", "error", "not found", "truncat",
                                  "corrupt")):
            text = ln
            break
    else:
        text = lines[0] if lines else type(err).__name__
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _natural_key(name: str):
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok.lower())
            for tok in re.split(r"(\d+)", name) if tok != ""]


def _as_path(path) -> Path:
    if isinstance(path, Path):
        return path.expanduser()
    if isinstance(path, (str, os.PathLike)):
        return Path(os.fspath(path)).expanduser()
    raise InputError(f"expected a file or folder path, got {type(path).__name__}; "
                     "give the path of a video, a folder of frames or a tif stack")


def _scan_range(frames: Iterable[np.ndarray]) -> tuple[float, float]:
    """Global (min, max) over finite values of a sequence of arrays, streaming."""
    lo, hi = np.inf, -np.inf
    for f in frames:
        f = np.asarray(f)
        if f.dtype.kind == "f":
            f = f[np.isfinite(f)]
        if f.size == 0:
            continue
        lo = min(lo, float(f.min()))
        hi = max(hi, float(f.max()))
    if not np.isfinite(lo):
        lo, hi = 0.0, 0.0
    return lo, hi


def _needs_scaling(dtype) -> bool:
    dtype = np.dtype(dtype)
    return dtype != np.uint8 and dtype != np.bool_


def _to_rgb8(frame: np.ndarray, scale: tuple[float, float] | None = None) -> np.ndarray:
    """One frame (H,W), (H,W,1|2|3|4) of any numeric dtype -> (H,W,3) uint8.

    ``scale`` is the video-wide (min, max) used for non-uint8 data.
    """
    a = np.asarray(frame)
    if a.ndim == 3:
        c = a.shape[2]
        if c in (1, 2):          # grey (+ alpha)
            a = a[:, :, 0]
        elif c == 4:             # RGBA: drop alpha
            a = a[:, :, :3]
        elif c != 3:
            raise ValueError(f"frame has {c} channels; expected 1, 3 or 4")
    elif a.ndim != 2:
        raise ValueError(f"frame has shape {a.shape}; expected (H,W) or (H,W,C)")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        lo, hi = scale if scale is not None else _scan_range([a])
        f = a.astype(np.float32)
        if hi > lo:
            f = (f - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        else:
            f = np.zeros_like(f)
        f = np.nan_to_num(f, nan=0.0, posinf=255.0, neginf=0.0)
        a = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a)


# --------------------------------------------------------------------------- sources
# A source knows how to decode frame i of one kind of input; Video adds the cache, the
# lock, indexing and the numpy protocol on top.

class _Source:
    n: int
    height: int
    width: int
    fps: float | None = None
    description = "video"

    def read(self, i: int) -> np.ndarray:          # (H, W, 3) uint8
        raise NotImplementedError

    def close(self) -> None:
        pass


class _ArraySource(_Source):
    description = "array"

    def __init__(self, arr, name: str):
        shape = tuple(getattr(arr, "shape", ()))
        if not shape:
            arr = np.asarray(arr)
            shape = arr.shape
        if len(shape) == 3:
            pass
        elif len(shape) == 4 and shape[3] in (1, 2, 3, 4):
            pass
        else:
            raise InputError(f"array '{name}' has shape {shape}; expected (T,H,W) grey or "
                             "(T,H,W,C) with C = 1, 3 or 4 - reshape the array to one of these")
        if shape[0] == 0:
            raise InputError(f"array '{name}' has zero frames; give at least one frame")
        if shape[1] == 0 or shape[2] == 0:
            raise InputError(f"array '{name}' has empty frames (shape {shape}); give non-empty "
                             "frames")
        self._arr = arr
        self.n, self.height, self.width = int(shape[0]), int(shape[1]), int(shape[2])
        dtype = np.dtype(getattr(arr, "dtype", np.float64))
        self._scale = None
        if _needs_scaling(dtype):
            if isinstance(arr, np.ndarray):
                self._scale = _scan_range([arr])
            else:
                self._scale = _scan_range(np.asarray(arr[i]) for i in range(self.n))
        # a uint8 RGB ndarray is served as views, without the cache
        self.direct = (isinstance(arr, np.ndarray) and arr.dtype == np.uint8
                       and arr.ndim == 4 and arr.shape[3] == 3)

    def read(self, i):
        return _to_rgb8(np.asarray(self._arr[i]), self._scale)


class _FFmpegSource(_Source):
    """Frames of a video file, through one long-lived ffmpeg process (imageio-ffmpeg).

    Reading frame i after frame i-1 just takes the next frame from the pipe; a backward
    or far jump restarts ffmpeg with a seek to the midpoint between the timestamps of
    frames i-1 and i (fast keyframe seek, then an accurate decode of the last seconds),
    so the first frame it delivers is exactly frame i.
    """

    description = "video"
    SKIP_LIMIT = 48          # forward jumps up to this many frames decode through
    SLOW_SEEK_S = 3.0        # seconds decoded accurately after the fast keyframe seek

    def __init__(self, path: Path):
        import imageio_ffmpeg
        self._ffmpeg = imageio_ffmpeg
        self.path = path
        self._gen = None
        self._pos = -1
        self._last = None
        times, n, tb_ok, errors = self._scan(path)
        if n == 0:
            if errors:
                raise InputError(f"video {path} could not be decoded ({errors[0]}); check that "
                                 "the file is a complete, uncorrupted video (re-export or "
                                 "re-download it)")
            raise InputError(f"video {path} has no frames; give a video with at least one frame")
        meta = self._start(0)
        self.width, self.height = (int(v) for v in meta["size"])
        fps = float(meta.get("fps") or 0.0)
        self.fps = fps if fps > 0 and np.isfinite(fps) else None
        duration = float(meta.get("duration") or 0.0)
        expected = duration * self.fps if self.fps and duration > 0 else 0.0
        short = n < 0.95 * expected - 1
        if errors and short:
            # decode errors and far fewer frames than the container announces: truncated
            self.close()
            raise InputError(
                f"video {path} is truncated or corrupt: only {n} of about {int(round(expected))} "
                f"frames could be decoded ({errors[0]}); re-export or re-download the file")
        if errors:
            warnings.warn(f"ffmpeg reported problems while decoding {path} ({errors[0]}); "
                          f"using the {n} frames that decoded", RuntimeWarning, stacklevel=3)
        elif short:
            # no decode error: the container's duration may include a longer audio track,
            # or the file was cut at a clean point - usable, but say so
            warnings.warn(f"video {path}: only {n} frames decoded although its duration suggests "
                          f"about {int(round(expected))}; the file may be truncated",
                          RuntimeWarning, stacklevel=3)
        self.n = n
        self._times = times
        # seeking by timestamp needs one strictly increasing timestamp per frame
        self._seekable = (tb_ok and len(times) == n
                          and (n < 2 or bool(np.all(np.diff(np.asarray(times)) > 0))))

    # one streaming decode pass: exact frame count, per-frame timestamps, decode errors
    def _scan(self, path: Path):
        exe = self._ffmpeg.get_ffmpeg_exe()
        cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "level+info", "-i", str(path),
               "-map", "0:V:0", "-vf", "showinfo=checksum=0", "-fps_mode", "passthrough",
               "-f", "null", "-"]
        re_tb = re.compile(r"config in time_base:\s*(\d+)/(\d+)")
        re_frame = re.compile(r"\]\s+n:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)")
        re_err = re.compile(r"\[(error|fatal)\]\s*(.*)")
        tb = None
        tb_ok = True
        pts: list[int] = []
        errors: list[str] = []
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        except OSError as err:  # pragma: no cover - ffmpeg binary missing
            raise InputError(f"cannot run ffmpeg to read video {path} ({_short(err)}); "
                             "reinstall imageio-ffmpeg") from err
        try:
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                m = re_frame.search(line)
                if m:
                    if m.group(2) == "NOPTS":
                        tb_ok = False
                        pts.append(0)
                    else:
                        pts.append(int(m.group(2)))
                    continue
                m = re_tb.search(line)
                if m and tb is None:
                    num, den = int(m.group(1)), int(m.group(2))
                    tb = Fraction(num, den) if den else None
                    continue
                m = re_err.search(line)
                if m and len(errors) < 50:
                    msg = " ".join(m.group(2).split())
                    if msg:
                        errors.append(msg[:160])
        finally:
            proc.stderr.close()
            proc.wait()
        if tb is None:
            tb_ok = False
            times = [float(i) for i in range(len(pts))]
        else:
            times = [float(p * tb) for p in pts]
        if not pts and not errors and proc.returncode != 0:
            errors.append(f"ffmpeg exited with code {proc.returncode}")
        if not pts and any("matches no streams" in e for e in errors):
            raise InputError(f"video {path} has no video stream (zero frames); give a file that "
                             "contains video frames")
        if not pts and any("moov atom not found" in e for e in errors) and _is_mp4_box(path):
            raise InputError(f"video {path} is incomplete (moov atom not found): the recording, "
                             "copy or download was probably interrupted; re-export or "
                             "re-download it")
        # when ffmpeg could not open the file at all, report its last error
        if not pts and errors:
            fatal = [e for e in errors if "Error opening input" in e or "Invalid data" in e]
            if fatal or proc.returncode != 0:
                why = fatal[0] if fatal else errors[-1]
                raise InputError(
                    f"video {path} could not be read as a video ({why}); "
                    "check that the file is a complete, uncorrupted video (mp4/avi/mov/mkv/webm)")
        return times, len(pts), tb_ok, errors

    def _start(self, i: int):
        """(Re)start ffmpeg so that the next frame it yields is frame i."""
        self._stop()
        iargs, oargs = [], []
        pos = -1
        if i > 0 and getattr(self, "_seekable", False):
            target = 0.5 * (self._times[i - 1] + self._times[i])
            slow = min(self.SLOW_SEEK_S, target)
            fast = target - slow
            if fast > 0:
                iargs += ["-ss", f"{fast:.6f}"]
            oargs += ["-ss", f"{slow:.6f}"]
            pos = i - 1
        oargs = ["-map", "0:V:0", "-fps_mode", "passthrough"] + oargs
        gen = self._ffmpeg.read_frames(str(self.path), pix_fmt="rgb24", bits_per_pixel=24,
                                       input_params=iargs, output_params=oargs)
        try:
            meta = next(gen)
        except StopIteration as err:
            raise InputError(f"video {self.path} could not be read as a video; check that the "
                             "file is a complete, uncorrupted video") from err
        except Exception as err:
            gen.close()
            raise InputError(f"video {self.path} could not be read as a video ({_short(err)}); "
                             "check that the file is a complete, uncorrupted video "
                             "(mp4/avi/mov/mkv/webm)") from err
        self._gen = gen
        self._pos = pos
        self._last = None
        return meta

    def _stop(self):
        gen, self._gen = self._gen, None
        if gen is not None:
            try:
                gen.close()
            except Exception:  # pragma: no cover - ffmpeg already gone
                pass

    def _next(self):
        try:
            buf = next(self._gen)
        except StopIteration:
            return None
        self._pos += 1
        return buf

    def read(self, i):
        if i == self._pos and self._last is not None:
            return self._last
        if self._gen is None or i <= self._pos or i > self._pos + self.SKIP_LIMIT:
            self._start(i)
        buf = None
        while self._pos < i:
            buf = self._next()
            if buf is None:
                break
        if buf is None and self._seekable and self._pos != i:
            # the seek missed (broken timestamps): fall back to decoding from the start
            self._seekable = False
            self._start(0)
            while self._pos < i:
                buf = self._next()
                if buf is None:
                    break
        if buf is None or self._pos != i:
            self._stop()
            raise InputError(f"video {self.path}: frame {i} of {self.n} could not be decoded; "
                             "the file may be truncated or was changed while open")
        frame = np.frombuffer(buf, np.uint8).reshape(self.height, self.width, 3)
        self._last = frame
        return frame

    def close(self):
        self._stop()
        self._last = None

    def __del__(self):  # make sure no ffmpeg process outlives the object
        try:
            self._stop()
        except Exception:
            pass


def _is_mp4_box(path: Path) -> bool:
    """Whether the file starts like an ISO-BMFF (mp4/mov) file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return head[4:8] in (b"ftyp", b"mdat", b"wide", b"free", b"moov")


class _GifSource(_Source):
    description = "gif"

    def __init__(self, path: Path):
        from PIL import Image
        try:
            im = Image.open(path)
            im.load()
            n = int(getattr(im, "n_frames", 1))
        except Exception as err:
            raise InputError(f"gif {path} could not be read ({_short(err)}); check that the file "
                             "is a complete, uncorrupted GIF") from err
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
            raise InputError(f"gif {self.path}: frame {i} could not be decoded ({_short(err)}); "
                             "the file may be truncated or corrupt") from err

    def close(self):
        try:
            self._im.close()
        except Exception:  # pragma: no cover
            pass


def _read_image_raw(path: Path) -> np.ndarray:
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


def _image_header(path: Path) -> tuple[tuple[int, int], bool]:
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
        return (int(w), int(h)), _needs_scaling(dtype)
    from PIL import Image
    with Image.open(path) as im:
        return im.size, im.mode in _HIGH_DEPTH_PIL_MODES


class _FolderSource(_Source):
    description = "folder"

    def __init__(self, path: Path):
        self.path = path
        try:
            entries = list(path.iterdir())
        except OSError as err:
            raise InputError(f"folder {path} could not be listed ({_short(err)}); check its "
                             "permissions") from err
        files = [p for p in entries if p.is_file() and not p.name.startswith(".")
                 and p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            videos = sorted(p.name for p in entries
                            if p.suffix.lower() in VIDEO_EXTENSIONS + GIF_EXTENSIONS)
            hint = (f"; it holds video files ({', '.join(videos[:3])}): give one of those instead"
                    if videos else "; point to a folder of frames (.jpg .jpeg .png .bmp .tif) "
                                   "or to a video file")
            raise InputError(f"folder {path} contains no image frames{hint}")
        files.sort(key=lambda p: _natural_key(p.name))
        size0 = None
        high = []
        for f in files:
            try:
                size, hb = _image_header(f)
            except Exception as err:
                raise InputError(f"frame {f.name} in folder {path} is not a readable image "
                                 f"({_short(err)}); remove or replace it") from err
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
        self._high = high
        self._scale = None
        if any(high):  # 16-bit / float frames: one range for the whole video
            def hi_frames():
                for f, hb in zip(files, high):
                    if hb:
                        yield self._raw(f)
            self._scale = _scan_range(hi_frames())

    def _raw(self, f: Path):
        try:
            return _read_image_raw(f)
        except Exception as err:
            raise InputError(f"frame {f.name} in folder {self.path} could not be read "
                             f"({_short(err)}); the file may be truncated - replace it") from err

    def read(self, i):
        f = self.files[i]
        a = self._raw(f)
        try:
            return _to_rgb8(a, self._scale)
        except ValueError as err:
            raise InputError(f"frame {f.name} in folder {self.path}: {err}; save it as grey, "
                             "RGB or RGBA") from err


class _TiffSource(_Source):
    description = "tif stack"

    def __init__(self, path: Path):
        import tifffile
        self.path = path
        try:
            tf = tifffile.TiffFile(str(path))
        except Exception as err:
            raise InputError(f"tif stack {path} could not be read ({_short(err)}); check that it "
                             "is a complete, uncorrupted TIFF file") from err
        self._tf = tf
        try:
            self._setup(tf)
        except InputError:
            tf.close()
            raise
        except Exception as err:
            tf.close()
            raise InputError(f"tif stack {path} could not be read ({_short(err)}); check that it "
                             "is a complete, uncorrupted TIFF file") from err

    def _setup(self, tf):
        import tifffile
        path = self.path
        series = tf.series[0]
        shape = tuple(int(s) for s in series.shape)
        axes = str(series.axes)
        # drop singleton axes but keep at least (Y, X)
        keep = [k for k, s in enumerate(shape) if s != 1 or k >= len(shape) - 2]
        shape = tuple(shape[k] for k in keep)
        axes = "".join(axes[k] for k in keep) if len(axes) == len(series.shape) else ""
        nd = len(shape)
        move_c = False
        if nd == 2:
            t_axis = False
        elif nd == 3:
            if axes.endswith("S") and shape[2] in (3, 4):
                t_axis = False                      # one RGB(A) image
            elif axes.startswith("C") and shape[0] in (3, 4) and shape[2] > 4:
                t_axis = False                      # one planar RGB image
                move_c = True
            else:
                t_axis = True                       # (T, H, W)
        elif nd == 4:
            t_axis = True
            if shape[3] in (1, 2, 3, 4):
                pass                                # (T, H, W, C)
            elif shape[1] in (1, 2, 3, 4):
                move_c = True                       # (T, C, H, W), ImageJ style
            else:
                raise InputError(
                    f"tif stack {path} has shape {shape} (axes {axes or '?'}); expected (T,H,W) or "
                    "(T,H,W,C) with C = 1, 3 or 4 - save one time series of 2D frames")
        else:
            raise InputError(
                f"tif stack {path} has shape {shape} (axes {axes or '?'}); expected (T,H,W) or "
                "(T,H,W,C) with C = 1, 3 or 4 - save one time series of 2D frames (e.g. one "
                "z-plane or channel)")
        self._t_axis, self._move_c = t_axis, move_c
        frame_shape = shape[1:] if t_axis else shape
        if move_c:
            frame_shape = frame_shape[1:] + frame_shape[:1]
        self.n = shape[0] if t_axis else 1
        self.height, self.width = int(frame_shape[0]), int(frame_shape[1])
        if self.n == 0 or self.height == 0 or self.width == 0:
            raise InputError(f"tif stack {path} has no frames (shape {shape}); give a stack with "
                             "at least one frame")
        self._shape = shape
        # fastest: a memory map of uncompressed contiguous data
        self._mm = None
        try:
            mm = tifffile.memmap(str(path), mode="r")
            if int(np.prod(mm.shape)) == int(np.prod(shape)):
                self._mm = mm.reshape(shape)
        except Exception:
            self._mm = None
        self._full = None
        if self._mm is None:
            pages = [p for p in series.pages if p is not None] if hasattr(series, "pages") else []
            per_frame = len(pages) // self.n if self.n and pages else 0
            if per_frame and len(pages) == per_frame * self.n:
                self._pages = pages
                self._per_frame = per_frame
            else:   # data not split into pages per frame: read it once (small files)
                self._full = np.asarray(series.asarray()).reshape(shape)
        self.fps = None
        try:
            ij = tf.imagej_metadata or {}
            fi = float(ij.get("finterval") or 0)
            if fi > 0:
                self.fps = 1.0 / fi
            elif float(ij.get("fps") or 0) > 0:
                self.fps = float(ij["fps"])
        except Exception:
            self.fps = None
        dtype = np.dtype(series.dtype)
        self._scale = None
        if _needs_scaling(dtype):       # one (min, max) for the whole stack
            self._scale = _scan_range(self._raw(i) for i in range(self.n))

    def _raw(self, i):
        t = self._t_axis
        if self._mm is not None:
            a = self._mm[i] if t else self._mm
        elif self._full is not None:
            a = self._full[i] if t else self._full
        else:
            k = self._per_frame
            parts = [p.asarray() for p in self._pages[i * k:(i + 1) * k]]
            a = parts[0] if k == 1 else np.stack(parts)
            a = a.reshape(self._shape[1:] if t else self._shape)
        a = np.asarray(a)
        if self._move_c:
            a = np.moveaxis(a, 0, -1)
        return a

    def read(self, i):
        try:
            a = self._raw(i)
        except Exception as err:
            raise InputError(f"tif stack {self.path}: frame {i} could not be read ({_short(err)}); "
                             "the file may be truncated or corrupt") from err
        return _to_rgb8(a, self._scale)

    def close(self):
        self._mm = None
        try:
            self._tf.close()
        except Exception:  # pragma: no cover
            pass


# --------------------------------------------------------------------------- Video

class Video:
    """A lazy ``(T, H, W, 3) uint8`` video.

    Frames are decoded on demand; at most ``cache_size`` decoded frames (and never more
    than 512 MiB) are kept in an LRU cache.  Reads are serialised by a lock, so a worker
    thread and the GUI may read concurrently.  Index like a numpy array: ``v[i]``,
    ``v[-1]``, ``v[a:b:s]``, ``v[[0, 5, 9]]``, ``v[i, y0:y1, x0:x1]``; ``np.asarray(v)``
    reads every frame.  Use :meth:`from_array` to wrap an in-memory array and
    :func:`open_video` for files/folders/stacks.
    """

    def __init__(self, source: _Source, *, name: str, path: Path | None = None,
                 cache_size: int = _DEFAULT_CACHE_FRAMES):
        self._src = source
        self.name = name
        self.path = path
        self.fps = float(source.fps) if source.fps else None
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        frame_bytes = max(1, source.height * source.width * 3)
        self.cache_size = max(1, min(int(cache_size), _CACHE_BYTES // frame_bytes))

    # ---- construction
    @classmethod
    def from_array(cls, arr, name: str = "array", fps: float | None = None) -> Video:
        """Wrap an in-memory ``(T,H,W,3)``, ``(T,H,W)``, ``(T,H,W,1)`` or ``(T,H,W,4)``
        array (any numeric dtype; non-uint8 is rescaled with the array's min/max)."""
        if isinstance(arr, Video):
            return arr
        v = cls(_ArraySource(arr, name), name=name, path=None)
        v.fps = float(fps) if fps else None
        return v

    # ---- array-like protocol
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self._src.n, self._src.height, self._src.width, 3)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 4

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size

    def __len__(self) -> int:
        return self._src.n

    def __repr__(self) -> str:
        t, h, w, _ = self.shape
        fps = f", fps={self.fps:g}" if self.fps else ""
        return f"<Video {self.name!r}: {t} frames of {w}x{h} from {self._src.description}{fps}>"

    def __iter__(self):
        for i in range(len(self)):
            yield self.frame(i)

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (negative counts from the end) as a new (H, W, 3) uint8 array."""
        return self._frame(self._check_index(i)).copy()

    def _check_index(self, i) -> int:
        n = len(self)
        try:
            i = int(i.__index__())
        except AttributeError:
            raise TypeError(f"frame index must be an integer, got {type(i).__name__}") from None
        if i < -n or i >= n:
            raise IndexError(f"frame index {i} is out of range for a video of {n} frames")
        return i + n if i < 0 else i

    def _frame(self, i: int) -> np.ndarray:
        """Cached frame i (read-only array, do not modify)."""
        src = self._src
        if isinstance(src, _ArraySource) and src.direct:
            return src._arr[i]
        with self._lock:
            f = self._cache.get(i)
            if f is not None:
                self._cache.move_to_end(i)
                return f
            try:
                f = src.read(i)
            except InputError:
                raise
            except Exception as err:
                raise InputError(f"{src.description} {self.path or self.name}: frame {i} could not "
                                 f"be read ({_short(err)}); the file may be damaged") from err
            f = np.ascontiguousarray(f, dtype=np.uint8)
            if f.shape != (src.height, src.width, 3):
                raise InputError(f"{src.description} {self.path or self.name}: frame {i} is "
                                 f"{f.shape[1]}x{f.shape[0]} but the video is {src.width}x"
                                 f"{src.height}; all frames must have the same size")
            f.setflags(write=False)
            self._cache[i] = f
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return f

    def _frames(self, idx) -> np.ndarray:
        idx = [self._check_index(i) for i in idx]
        out = np.empty((len(idx),) + self.shape[1:], np.uint8)
        # decode in increasing order (sequential reads are cheap), place where asked
        order = sorted(range(len(idx)), key=lambda k: idx[k])
        for k in order:
            out[k] = self._frame(idx[k])
        return out

    def _time_indices(self, key):
        if isinstance(key, slice):
            return range(*key.indices(len(self)))
        a = np.asarray(key)
        if a.dtype == np.bool_:
            if a.shape != (len(self),):
                raise IndexError(f"boolean index has shape {a.shape}; expected ({len(self)},)")
            return np.flatnonzero(a).tolist()
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise IndexError(f"unsupported frame index {key!r}")
        return a.astype(np.int64).tolist()

    def __getitem__(self, key):
        if isinstance(key, tuple):
            if any(k is None for k in key):
                return np.asarray(self)[key]
            n_ell = sum(1 for k in key if k is Ellipsis)
            if n_ell > 1:
                raise IndexError("an index can only have a single ellipsis ('...')")
            if n_ell:
                e = next(j for j, k in enumerate(key) if k is Ellipsis)
                fill = (slice(None),) * max(0, 4 - (len(key) - 1))
                key = key[:e] + fill + key[e + 1:]
            if len(key) > 4:
                raise IndexError(f"too many indices for a 4-d video: {len(key)}")
            if not key:
                return np.asarray(self)
            t, rest = key[0], key[1:]
            if isinstance(t, (int, np.integer)):
                return np.array(self._frame(self._check_index(t))[rest])
            frames = self._frames(self._time_indices(t))
            return frames[(slice(None),) + rest] if rest else frames
        if key is Ellipsis:
            return np.asarray(self)
        if isinstance(key, (int, np.integer)):
            return self.frame(key)
        return self._frames(self._time_indices(key))

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("a lazy Video cannot be viewed as an array without copying; "
                             "use np.asarray(video) or np.array(video)")
        out = self._frames(range(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)

    # ---- lifetime
    def close(self) -> None:
        """Stop the ffmpeg process of a video file and drop the frame cache.  The video
        stays usable: a later read starts ffmpeg again."""
        with self._lock:
            self._cache.clear()
            if isinstance(self._src, _FFmpegSource):
                self._src.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --------------------------------------------------------------------------- opening

def open_video(path, cache_size: int = _DEFAULT_CACHE_FRAMES) -> Video:
    """Open a video file, a .gif, a folder of frames, a tif stack or a single image
    lazily, as a ``(T, H, W, 3) uint8`` :class:`Video`.

    Raises :class:`InputError` for a missing path, an unsupported or unreadable file,
    a truncated/corrupt video, zero frames, or a folder of differently sized frames.
    """
    p = _as_path(path)
    if not p.exists():
        raise InputError(f"video {p} does not exist; check the path")
    if p.is_dir():
        src: _Source = _FolderSource(p)
        name = p.resolve().name or str(p)
    else:
        ext = p.suffix.lower()
        try:
            empty = p.stat().st_size == 0
        except OSError as err:
            raise InputError(f"video {p} could not be accessed ({_short(err)}); check its "
                             "permissions") from err
        if ext in VIDEO_EXTENSIONS + GIF_EXTENSIONS + IMAGE_EXTENSIONS and empty:
            raise InputError(f"video {p} is an empty file (0 bytes); the copy or download "
                             "probably failed - get the file again")
        if ext in GIF_EXTENSIONS:
            src = _GifSource(p)
        elif ext in TIFF_EXTENSIONS:
            src = _TiffSource(p)
        elif ext in VIDEO_EXTENSIONS:
            src = _FFmpegSource(p)
        elif ext in IMAGE_EXTENSIONS:        # one image: a one-frame video
            src = _SingleImageSource(p)
        else:
            raise InputError(
                f"{p} has an unsupported extension '{p.suffix or '(none)'}'; give a video file "
                f"({' '.join(e for e in VIDEO_EXTENSIONS[:6])} .gif), a folder of frames "
                "(.jpg/.png) or a .tif stack")
        name = p.stem
    return Video(src, name=name, path=p, cache_size=cache_size)


class _SingleImageSource(_FolderSource):
    description = "image"

    def __init__(self, path: Path):
        self.path = path
        try:
            size, hb = _image_header(path)
        except Exception as err:
            raise InputError(f"image {path} could not be read ({_short(err)}); check that it is a "
                             "complete, uncorrupted image") from err
        self.files = [path]
        self.n = 1
        self.width, self.height = int(size[0]), int(size[1])
        self._scale = _scan_range([self._raw(path)]) if hb else None

    def _raw(self, f):
        try:
            return _read_image_raw(f)
        except Exception as err:
            raise InputError(f"image {f} could not be read ({_short(err)}); the file may be "
                             "truncated - replace it") from err


def as_video(x, name: str | None = None) -> Video:
    """A :class:`Video` from a Video (returned as is), a path, or an array-like."""
    if isinstance(x, Video):
        return x
    if isinstance(x, (str, os.PathLike)):
        return open_video(x)
    return Video.from_array(x, name=name or "array")


# --------------------------------------------------------------------------- palettes

def davis_palette(n: int = 256) -> np.ndarray:
    """The DAVIS / PASCAL VOC colour map as ``(n, 3) uint8``.

    Id ``i`` gets its colour by spreading the bits of ``i`` over the channels, three
    at a time: bit 0 -> red, bit 1 -> green, bit 2 -> blue, placed from the most
    significant bit of each channel downwards (bits 3, 4, 5 go one place lower, ...).
    """
    n = int(n)
    if n < 0:
        raise ValueError("n must be >= 0")
    ids = np.arange(n, dtype=np.int64)
    pal = np.zeros((n, 3), np.int64)
    shift = 7
    rest = ids.copy()
    while shift >= 0 and np.any(rest):
        for ch in range(3):
            pal[:, ch] |= ((rest >> ch) & 1) << shift
        rest >>= 3
        shift -= 1
    return pal.astype(np.uint8)


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _full_palette(palette) -> np.ndarray:
    """(N,3) colours (0-255, or 0-1 floats) -> (256,3) uint8, missing entries DAVIS."""
    out = davis_palette(256)
    if palette is None:
        return out
    p = np.asarray(palette)
    if p.ndim != 2 or p.shape[1] not in (3, 4):
        raise InputError(f"palette has shape {p.shape}; expected (N,3) RGB colours")
    p = p[:256, :3]
    if p.dtype.kind == "f":
        if p.size and np.nanmax(p) <= 1.0:
            p = p * 255.0
        p = np.rint(np.nan_to_num(p))
    out[: len(p)] = np.clip(p, 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------- masks

def _mask_shape_check(path: Path, ids: np.ndarray, shape) -> None:
    if shape is None:
        return
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4:          # a video shape (T, H, W, 3)
        h, w = shape[1], shape[2]
    elif len(shape) >= 2:
        h, w = shape[0], shape[1]
    else:
        raise ValueError(f"shape must be (H, W), got {shape}")
    mh, mw = ids.shape
    if (mh, mw) != (h, w):
        raise InputError(f"mask {path} is {mw}x{mh} but the video frames are {w}x{h}; paint "
                         "the mask on a frame of this video or resize it to the frame size")


def _ids_from_colours(path: Path, rgb: np.ndarray, alpha: np.ndarray | None):
    """(H,W,3) uint8 colours -> (ids int32, palette (256,3) uint8)."""
    packed = _pack_rgb(rgb)
    if alpha is not None:
        packed = np.where(alpha == 0, 0, packed)          # transparent = background
    flat = packed.reshape(-1)
    colours, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    inverse = inverse.reshape(packed.shape)
    nonblack = colours != 0
    dav = davis_palette(256)
    dav_packed = _pack_rgb(dav)
    lut_davis = {int(c): i for i, c in enumerate(dav_packed) if i > 0}
    if all(int(c) in lut_davis for c in colours[nonblack]):
        table = np.array([0 if c == 0 else lut_davis[int(c)] for c in colours], np.int32)
        return table[inverse].astype(np.int32), dav.copy()
    n_obj = int(nonblack.sum())
    if n_obj > 255:
        raise InputError(
            f"mask {path} has {n_obj} different colours, so it looks anti-aliased or compressed "
            "(e.g. a JPEG or a smoothed brush); save the mask as an indexed PNG (one palette "
            "index per object, 0 = background) or paint it with hard edges")
    # ids 1..N by first appearance in raster order
    order = np.argsort(np.where(nonblack, first, -1), kind="stable")
    table = np.zeros(len(colours), np.int32)
    pal = davis_palette(256)
    next_id = 1
    for k in order:
        if not nonblack[k]:
            continue
        table[k] = next_id
        c = int(colours[k])
        pal[next_id] = ((c >> 16) & 255, (c >> 8) & 255, c & 255)
        next_id += 1
    return table[inverse].astype(np.int32), pal


def read_mask(path, shape=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a label mask: ``(ids (H,W) int32, palette (256,3) uint8 or None)``.

    * indexed PNG (mode "P"): the palette indices are the ids, the file's palette is
      returned (entries it lacks are filled with the DAVIS colours);
    * greyscale PNG/TIF (8/16/32-bit): the values are the ids, palette None;
    * RGB/RGBA: black (and fully transparent) is background 0; if every other colour is
      a DAVIS/VOC palette colour its DAVIS id is used, otherwise up to 255 colours get
      ids 1..N in order of first appearance (raster order) and the palette lists them;
      more colours (anti-aliasing, JPEG) is an error.

    ``shape``: the frame size ``(H, W)`` (or a video shape ``(T,H,W,3)``) the mask must
    match.
    """
    p = _as_path(path)
    if not p.exists():
        raise InputError(f"mask {p} does not exist; check the path")
    if p.is_dir():
        raise InputError(f"mask {p} is a folder; give one mask image (an indexed PNG)")
    arr = None
    palette = None
    mode = None
    if p.suffix.lower() in TIFF_EXTENSIONS:
        try:
            import tifffile
            arr = np.asarray(tifffile.imread(str(p)))
            arr = np.squeeze(arr) if arr.ndim > 2 else arr
            if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
                arr = np.moveaxis(arr, 0, -1)
        except Exception:
            arr = None
    if arr is None:
        from PIL import Image
        try:
            with Image.open(p) as im:
                if im.format in ("JPEG", "MPO"):
                    raise InputError(f"mask {p} is a JPEG: its lossy compression changes the "
                                     "object ids at every edge; save the mask as a PNG "
                                     "(indexed, 0 = background)")
                im.load()
                mode = im.mode
                if mode == "P":
                    arr = np.asarray(im).astype(np.int32)
                    raw = im.getpalette() or []
                    pal = np.asarray(raw, np.uint8).reshape(-1, 3)[:256] if raw else None
                    palette = _full_palette(pal)
                elif mode in ("1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
                    arr = np.asarray(im)
                elif mode == "LA":
                    arr = np.asarray(im)[..., 0]
                elif mode == "RGBA":
                    arr = np.asarray(im)
                else:
                    arr = np.asarray(im.convert("RGB"))
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"mask {p} is not a readable image ({_short(err)}); save the mask "
                             "as a PNG (indexed, 0 = background)") from err
    if mode == "P":
        ids = arr
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[..., :3]
        alpha = arr[..., 3] if arr.shape[2] == 4 else None
        if rgb.dtype != np.uint8:
            raise InputError(f"mask {p} is a {rgb.dtype} colour image; save it as an 8-bit "
                             "indexed or RGB PNG")
        ids, palette = _ids_from_colours(p, rgb, alpha)
    elif arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 2)):
        a = arr if arr.ndim == 2 else arr[..., 0]
        if a.dtype == np.bool_:
            a = a.astype(np.int32)
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise InputError(f"mask {p} holds non-integer values; save integer object ids "
                                 "(0 = background) as an indexed or greyscale PNG")
        if a.size and a.min() < 0:
            raise InputError(f"mask {p} has negative values; object ids must be 0 (background) "
                             "or positive")
        if a.size and a.max() > np.iinfo(np.int32).max:
            raise InputError(f"mask {p} has ids too large for int32; renumber the objects")
        ids = a.astype(np.int32)
        palette = None
    else:
        raise InputError(f"mask {p} has shape {arr.shape}; expected one 2D label image - save "
                         "it as an indexed PNG")
    if ids.ndim != 2 or ids.size == 0:
        raise InputError(f"mask {p} has shape {ids.shape}; expected one non-empty 2D label image")
    _mask_shape_check(p, ids, shape)
    return np.ascontiguousarray(ids, dtype=np.int32), palette


# --------------------------------------------------------------------------- writing

def _tmp_sibling(path: Path) -> Path:
    """Create (empty, with normal permissions) a hidden temp file next to ``path`` with the
    same extension and return its path."""
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


def _prepare_out(path, what: str) -> Path:
    p = _as_path(path)
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create folder {p.parent} for {what} {p.name} ({_short(err)}); "
                         "check the path and permissions") from err
    return p


def write_indexed_png(path, labels, palette=None) -> None:
    """Write ``(H, W)`` integer ids 0..255 as an indexed (mode "P") PNG, atomically.

    ``palette``: ``(N, 3)`` colours for ids 0..N-1 (uint8, or floats in 0..1); ids
    beyond it, or all ids when None, get the DAVIS colours.
    """
    from PIL import Image
    p = _prepare_out(path, "mask")
    lab = np.asarray(labels)
    if lab.ndim == 3 and lab.shape[-1] == 1:
        lab = lab[..., 0]
    if lab.ndim != 2:
        raise InputError(f"labels for {p} have shape {lab.shape}; expected one (H, W) label image")
    if lab.dtype == np.bool_:
        lab = lab.astype(np.uint8)
    if lab.dtype.kind == "f":
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise InputError(f"labels for {p} are not whole numbers; give integer object ids")
    elif lab.dtype.kind not in "iu":
        raise InputError(f"labels for {p} have dtype {lab.dtype}; give integer object ids")
    if lab.size:
        lo, hi = lab.min(), lab.max()
        if lo < 0 or hi > 255:
            raise InputError(f"labels for {p} have ids from {int(lo)} to {int(hi)}; an indexed "
                             "PNG holds ids 0..255 - renumber the objects to at most 255")
    im = Image.fromarray(np.ascontiguousarray(lab, dtype=np.uint8))   # mode "L"
    im.putpalette(_full_palette(palette).reshape(-1).tolist())
    tmp = _tmp_sibling(p)
    try:
        im.save(tmp, format="PNG")
        os.replace(tmp, p)
    except BaseException as err:          # Ctrl+C mid-write too: no half-written file left
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if not isinstance(err, Exception):
            raise
        raise InputError(f"could not write mask {p} ({_short(err)}); check the disk space and "
                         "permissions") from err


def _iter_rgb_frames(frames):
    """Yield (H,W,3) uint8 frames from a Video, an array or an iterable of frames.

    Arrays are converted like :meth:`Video.from_array` (one range for the whole array);
    frames of a plain iterable that are not uint8 are scaled by their dtype's range
    (floats are taken as 0..1).
    """
    if isinstance(frames, Video):
        yield from frames
        return
    if isinstance(frames, np.ndarray):
        yield from Video.from_array(frames, name="frames")
        return
    for f in frames:
        f = np.asarray(f)
        scale = None
        if f.dtype.kind == "f":
            scale = (0.0, 1.0)
        elif f.dtype.kind in "iu" and f.dtype != np.uint8:
            info = np.iinfo(f.dtype)
            scale = (float(min(info.min, 0)), float(info.max))
        yield _to_rgb8(f, scale)


def write_video(path, frames, fps: float = 10, quality: float = 7) -> None:
    """Write frames ``(T, H, W, 3) uint8`` (an array, a :class:`Video` or an iterable of
    frames) to ``.mp4`` (also ``.mov .mkv .avi``; H.264, yuv420p) or ``.gif``, atomically.

    H.264 needs even sizes: odd widths/heights are padded by one pixel (edge copied).
    GIFs use one palette for the whole clip (ffmpeg palettegen) and keep every frame.
    """
    import imageio_ffmpeg
    p = _prepare_out(path, "video")
    ext = p.suffix.lower()
    if ext not in (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".gif"):
        raise InputError(f"cannot write video {p}: unsupported extension '{p.suffix}'; use .mp4 "
                         "or .gif")
    try:
        fps_f = float(fps)
    except (TypeError, ValueError):
        fps_f = -1.0
    if not (fps_f > 0 and np.isfinite(fps_f)):
        raise InputError(f"cannot write video {p}: fps must be a positive number, got {fps!r}")
    it = iter(_iter_rgb_frames(frames))
    try:
        first = next(it)
    except StopIteration:
        raise InputError(f"cannot write video {p}: there are no frames to write") from None
    h, w = first.shape[:2]
    gif = ext == ".gif"
    ph, pw = (h, w) if gif else (h + h % 2, w + w % 2)
    fps_frac = Fraction(fps_f).limit_denominator(1001)
    if gif:
        kwargs = dict(codec="gif", pix_fmt_out="pal8", quality=None,
                      output_params=["-filter_complex",
                                     "split[a][b];[a]palettegen=stats_mode=full[p];"
                                     "[b][p]paletteuse=dither=sierra2_4a",
                                     "-loop", "0", "-fps_mode", "passthrough"])
    else:
        kwargs = dict(codec="libx264", pix_fmt_out="yuv420p", quality=float(quality),
                      output_params=(["-movflags", "+faststart"] if ext in (".mp4", ".mov", ".m4v")
                                     else []))
    tmp = _tmp_sibling(p)
    gen = None
    n = 0
    try:
        gen = imageio_ffmpeg.write_frames(str(tmp), (pw, ph), fps=fps_frac, pix_fmt_in="rgb24",
                                          macro_block_size=1, ffmpeg_log_level="error", **kwargs)
        gen.send(None)
        for f in _chain_first(first, it):
            if f.shape[:2] != (h, w):
                raise InputError(f"cannot write video {p}: frame {n} is {f.shape[1]}x{f.shape[0]} "
                                 f"but the first frame is {w}x{h}; all frames must have one size")
            if (ph, pw) != (h, w):
                f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            gen.send(np.ascontiguousarray(f))
            n += 1
        gen.close()
        gen = None
        os.replace(tmp, p)
    except BaseException as err:
        if gen is not None:
            try:
                gen.close()
            except Exception:
                pass
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, (InputError, KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        if isinstance(err, Exception):
            raise InputError(f"could not write video {p} ({_short(err)}); check the disk space "
                             "and permissions") from err
        raise


def _chain_first(first, rest):
    yield first
    yield from rest


# --------------------------------------------------------------------------- overlay

def _overlay_frame(frame: np.ndarray, lab: np.ndarray, pal: np.ndarray, alpha: float,
                   outline: bool) -> np.ndarray:
    lab = np.asarray(lab)
    if lab.shape != frame.shape[:2]:
        raise InputError(f"labels of shape {lab.shape} do not match frames of size "
                         f"{frame.shape[1]}x{frame.shape[0]}; give labels of the video's size")
    out = frame.astype(np.float32)
    obj = lab > 0
    if obj.any():
        ids = np.clip(lab, 0, len(pal) - 1).astype(np.intp)
        col = pal[ids].astype(np.float32)
        out[obj] = (1.0 - alpha) * out[obj] + alpha * col[obj]
        if outline:
            edge = np.zeros_like(obj)
            edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
            edge[1:, :] |= lab[1:, :] != lab[:-1, :]
            edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
            edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
            edge &= obj
            out[edge] = col[edge]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def overlay(frames, labels, palette=None, alpha: float = 0.5, outline: bool = True) -> np.ndarray:
    """Colour the labelled objects over the frames: ``(T, H, W, 3) uint8``.

    ``frames``: a :class:`Video`, an array or an iterable of frames (read one at a time);
    ``labels``: ``(T, H, W)`` ids (0 = background) or a sequence of ``(H, W)`` arrays;
    ``palette``: ``(N, 3)`` colours per id (default DAVIS).  Objects are blended with
    ``alpha`` and, with ``outline``, their boundaries are drawn in full colour.
    """
    pal = _full_palette(palette).astype(np.float32)
    if not (0.0 <= float(alpha) <= 1.0):
        raise InputError(f"overlay alpha must be between 0 and 1, got {alpha}")
    n_lab = len(labels)
    n_frames = len(frames) if hasattr(frames, "__len__") else None
    if n_frames is not None and n_frames != n_lab:
        raise InputError(f"labels have {n_lab} frames but the video has {n_frames}; give one "
                         "label image per frame")
    out = None
    t = -1
    for t, f in enumerate(_iter_rgb_frames(frames)):
        if t >= n_lab:
            raise InputError(f"labels have {n_lab} frames but the video has more; give one label "
                             "image per frame")
        o = _overlay_frame(f, labels[t], pal, float(alpha), outline)
        if out is None:
            out = np.empty((n_frames or n_lab,) + o.shape, np.uint8)
        out[t] = o
    if out is None:
        return np.zeros((0, 0, 0, 3), np.uint8)
    if t + 1 != n_lab:
        raise InputError(f"labels have {n_lab} frames but the video has {t + 1}; give one label "
                         "image per frame")
    return out
from .tracks_csv import read_points_csv, write_tracks_csv  # noqa: E402
