"""Frames of a video file (.mp4 .avi .mov ...), decoded by the ffmpeg binary that ships
with imageio-ffmpeg.

At open, one streaming pass over the file (ffmpeg decoding to a null sink, nothing is
kept) gives the exact frame count and each frame's timestamp, so random access can seek
to the right frame even for variable frame rate video; sequential reads reuse one running
ffmpeg process.
"""
from __future__ import annotations

import re
import subprocess
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError
from .messages import short_error
from .source import FrameSource


class FFmpegSource(FrameSource):
    """Frames of a video file, through one long-lived ffmpeg process (imageio-ffmpeg).

    Reading frame i after frame i-1 just takes the next frame from the pipe; a backward
    or far jump restarts ffmpeg with a seek to the midpoint between the timestamps of
    frames i-1 and i (fast keyframe seek, then an accurate decode of the last seconds),
    so the first frame it delivers is exactly frame i.
    """

    description = "video"
    sequential = True        # a backward jump restarts ffmpeg (~0.5 s for a 720p frame)
    SKIP_LIMIT = 48          # forward jumps up to this many frames decode through
    SLOW_SEEK_S = 3.0        # seconds decoded accurately after the fast keyframe seek
    # ffmpeg decodes beside the encoder, which wants every core: one decoding thread and
    # one filter (pixel format conversion) thread take ~7 ms of one core per 720p frame,
    # far below the encoder's time per frame, and leave the other cores to torch.
    THREADS = ["-threads", "1", "-filter_threads", "1"]

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
            raise InputError(f"cannot run ffmpeg to read video {path} ({short_error(err)}); "
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
                                       input_params=self.THREADS[:2] + iargs,
                                       output_params=oargs + self.THREADS[2:])
        try:
            meta = next(gen)
        except StopIteration as err:
            raise InputError(f"video {self.path} could not be read as a video; check that the "
                             "file is a complete, uncorrupted video") from err
        except Exception as err:
            gen.close()
            raise InputError(f"video {self.path} could not be read as a video "
                             f"({short_error(err)}); check that the file is a complete, "
                             "uncorrupted video (mp4/avi/mov/mkv/webm)") from err
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

