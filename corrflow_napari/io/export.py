"""Writing results: indexed PNG masks, videos (.mp4 / .gif) and label overlays.

Files are written atomically (:mod:`corrflow_napari.io.atomic`); problems raise
:class:`corrflow_napari.errors.InputError` with a one-line message.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from ..errors import InputError
from .atomic import atomic_path
from .frames import to_rgb8
from .messages import short_error
from .palette import full_palette
from .paths import prepare_output
from .video import Video

#: extensions :func:`write_video` writes (H.264, or a GIF)
WRITE_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".gif")

def write_indexed_png(path, labels, palette=None) -> None:
    """Write ``(H, W)`` integer ids 0..255 as an indexed (mode "P") PNG, atomically.

    ``palette``: ``(N, 3)`` colours for ids 0..N-1 (uint8, or floats in 0..1); ids
    beyond it, or all ids when None, get the DAVIS colours.
    """
    from PIL import Image
    p = prepare_output(path, "mask")
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
    im.putpalette(full_palette(palette).reshape(-1).tolist())
    try:
        with atomic_path(p) as tmp:
            im.save(tmp, format="PNG")
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"could not write mask {p} ({short_error(err)}); check the disk space "
                         "and permissions") from err


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
        yield to_rgb8(f, scale)


def write_video(path, frames, fps: float = 10, quality: float = 7) -> None:
    """Write frames ``(T, H, W, 3) uint8`` (an array, a :class:`Video` or an iterable of
    frames) to ``.mp4`` (also ``.mov .mkv .avi``; H.264, yuv420p) or ``.gif``, atomically.

    H.264 needs even sizes: odd widths/heights are padded by one pixel (edge copied).
    GIFs use one palette for the whole clip (ffmpeg palettegen) and keep every frame.
    """
    p = prepare_output(path, "video")
    ext = p.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
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
    try:
        with atomic_path(p) as tmp:
            _encode(tmp, itertools.chain([first], it), (w, h), (pw, ph), fps_frac, kwargs, p)
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"could not write video {p} ({short_error(err)}); check the disk space "
                         "and permissions") from err


def _encode(tmp, frames, size, padded, fps, kwargs, p) -> None:
    """Encode (H,W,3) uint8 frames of one ``size`` (W, H) into the file ``tmp``, each
    edge-padded to ``padded`` (W, H); ``p`` names the target in messages."""
    import imageio_ffmpeg
    (w, h), (pw, ph) = size, padded
    gen = imageio_ffmpeg.write_frames(str(tmp), (pw, ph), fps=fps, pix_fmt_in="rgb24",
                                      macro_block_size=1, ffmpeg_log_level="error", **kwargs)
    try:
        gen.send(None)
        for n, f in enumerate(frames):
            if f.shape[:2] != (h, w):
                raise InputError(f"cannot write video {p}: frame {n} is {f.shape[1]}x{f.shape[0]} "
                                 f"but the first frame is {w}x{h}; all frames must have one size")
            if (ph, pw) != (h, w):
                f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            gen.send(np.ascontiguousarray(f))
        gen.close()
    except BaseException:
        try:
            gen.close()
        except Exception:
            pass
        raise


def _overlay_frame(frame: np.ndarray, lab: np.ndarray, pal: np.ndarray, alpha: float,
                   outline: bool) -> np.ndarray:
    """One (H,W,3) uint8 frame with its (H,W) labels blended in, as (H,W,3) uint8. Only
    the object pixels are computed (in float32; a 4K frame as float was 100 MB)."""
    lab = np.asarray(lab)
    if lab.shape != frame.shape[:2]:
        raise InputError(f"labels of shape {lab.shape} do not match frames of size "
                         f"{frame.shape[1]}x{frame.shape[0]}; give labels of the video's size")
    out = np.array(frame, dtype=np.uint8, order="C")
    obj = lab > 0
    if not obj.any():
        return out
    flat, lab_flat = out.reshape(-1, 3), lab.reshape(-1)

    def colour(at: np.ndarray) -> np.ndarray:       # palette colours of pixels ``at``
        return pal[np.clip(lab_flat[at], 0, len(pal) - 1)]

    at = np.flatnonzero(obj)
    flat[at] = np.clip(np.rint((1.0 - alpha) * flat[at].astype(np.float32) + alpha * colour(at)),
                       0, 255).astype(np.uint8)
    if outline:
        edge = np.zeros_like(obj)
        edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
        edge[1:, :] |= lab[1:, :] != lab[:-1, :]
        edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
        edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
        at = np.flatnonzero(edge & obj)
        flat[at] = np.clip(np.rint(colour(at)), 0, 255).astype(np.uint8)
    return out


def overlay_frames(frames, labels, palette=None, alpha: float = 0.5,
                   outline: bool = True) -> Iterator[np.ndarray]:
    """:func:`overlay` one frame at a time (for :func:`write_video`: a long 4K clip's
    overlay never has to fit in memory)."""
    pal = full_palette(palette).astype(np.float32)
    if not (0.0 <= float(alpha) <= 1.0):
        raise InputError(f"overlay alpha must be between 0 and 1, got {alpha}")
    n_lab = len(labels)
    n_frames = len(frames) if hasattr(frames, "__len__") else None
    if n_frames is not None and n_frames != n_lab:
        raise InputError(f"labels have {n_lab} frames but the video has {n_frames}; give one "
                         "label image per frame")
    t = -1
    for t, f in enumerate(_iter_rgb_frames(frames)):
        if t >= n_lab:
            raise InputError(f"labels have {n_lab} frames but the video has more; give one label "
                             "image per frame")
        yield _overlay_frame(f, labels[t], pal, float(alpha), outline)
    if t + 1 != n_lab:
        raise InputError(f"labels have {n_lab} frames but the video has {t + 1}; give one label "
                         "image per frame")


def overlay(frames, labels, palette=None, alpha: float = 0.5, outline: bool = True) -> np.ndarray:
    """Colour the labelled objects over the frames: ``(T, H, W, 3) uint8``.

    ``frames``: a :class:`Video`, an array or an iterable of frames (read one at a time);
    ``labels``: ``(T, H, W)`` ids (0 = background) or a sequence of ``(H, W)`` arrays;
    ``palette``: ``(N, 3)`` colours per id (default DAVIS).  Objects are blended with
    ``alpha`` and, with ``outline``, their boundaries are drawn in full colour.
    """
    out = None
    for t, o in enumerate(overlay_frames(frames, labels, palette, alpha, outline)):
        if out is None:
            out = np.empty((len(labels),) + o.shape, np.uint8)
        out[t] = o
    return np.zeros((0, 0, 0, 3), np.uint8) if out is None else out
