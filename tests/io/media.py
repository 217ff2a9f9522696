"""Test media written on the fly: coded frames, ffmpeg-written clips, message checks."""
from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

T, H, W = 12, 48, 64


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
    """The InputError message is one line and names the file."""
    msg = str(err.value)
    assert "\n" not in msg
    assert name in msg, msg


def code_frame(t, h=64, w=64):
    """Frame whose three blocks hold the base-7 digits of t (read back by decode_index)."""
    f = np.zeros((h, w, 3), np.uint8)
    for k, dg in enumerate((t // 49, (t // 7) % 7, t % 7)):
        f[:, k * 21:(k + 1) * 21] = dg * 36
    return f


def decode_index(f):
    """The index coded into a (possibly lossy) frame by code_frame."""
    d = [int(round(f[8:56, k * 21 + 5:(k + 1) * 21 - 5].mean() / 36)) for k in range(3)]
    return d[0] * 49 + d[1] * 7 + d[2]
