"""The lazy video: :class:`Video`, :func:`open_video` and :func:`as_video`.

A video is ``(T, H, W, 3) uint8`` RGB.  :func:`open_video` returns a :class:`Video`
that decodes frames on demand and keeps only a small LRU cache, so long videos never
have to fit in memory.  Which paths it opens is the table in
:mod:`corrflow_napari.io.formats`; each kind is decoded by a source module
(``ffmpeg_source``, ``gif_source``, ``image_sources``, ``tiff_source``).

All bad-input problems raise :class:`corrflow_napari.errors.InputError` with a one-line
message naming the file, the problem and what to do.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import InputError
from .ffmpeg_source import FFmpegSource
from .formats import VIDEO_EXTENSIONS, file_format
from .gif_source import GifSource
from .image_sources import FolderSource, SingleImageSource
from .messages import short_error
from .paths import as_path
from .source import ArraySource, FrameSource
from .tiff_source import TiffSource

_CACHE_BYTES = 512 * 2**20          # the frame cache never holds more than this
_DEFAULT_CACHE_FRAMES = 32
#: the source that decodes each kind of file of the formats table (a lone image is a
#: one-frame video)
_SOURCES: dict[str, type[FrameSource]] = {"video": FFmpegSource, "gif": GifSource,
                                          "tif stack": TiffSource, "image": SingleImageSource}


class Video:
    """A lazy ``(T, H, W, 3) uint8`` video.

    Frames are decoded on demand; at most ``cache_size`` decoded frames (and never more
    than 512 MiB) are kept in an LRU cache.  Reads are serialised by a lock, so a worker
    thread and the GUI may read concurrently.  Index like a numpy array: ``v[i]``,
    ``v[-1]``, ``v[a:b:s]``, ``v[[0, 5, 9]]``, ``v[i, y0:y1, x0:x1]``; ``np.asarray(v)``
    reads every frame.  Use :meth:`from_array` to wrap an in-memory array and
    :func:`open_video` for files/folders/stacks.
    """

    def __init__(self, source: FrameSource, *, name: str, path: Path | None = None,
                 cache_size: int = _DEFAULT_CACHE_FRAMES):
        self._src = source
        self.name = name
        self.path = path
        self.fps = float(source.fps) if source.fps else None
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        frame_bytes = max(1, source.height * source.width * 3)
        self.cache_size = max(1, min(int(cache_size), _CACHE_BYTES // frame_bytes))
        self._block = max(1, 3 * self.cache_size // 4)   # frames decoded per backward seek
        self._reader = threading.local()                # each thread's last frame read

    # ---- construction
    @classmethod
    def from_array(cls, arr, name: str = "array", fps: float | None = None) -> Video:
        """Wrap an in-memory ``(T,H,W,3)``, ``(T,H,W)``, ``(T,H,W,1)`` or ``(T,H,W,4)``
        array (any numeric dtype; non-uint8 is rescaled with the array's min/max)."""
        if isinstance(arr, Video):
            return arr
        v = cls(ArraySource(arr, name), name=name, path=None)
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
        """Cached frame i (read-only array, do not modify).

        A reader walking backward through a ``sequential`` source (a video file: each
        backward jump is a seek) gets a block of frames ending at i, decoded in increasing
        order after one seek, so that the frames before i are cached when it asks for them
        (720p: ~0.5 s per frame read backward one by one, ~0.03 s in blocks). The walking
        direction is each thread's own (the GUI and a worker read side by side)."""
        src = self._src
        if isinstance(src, ArraySource) and src.direct:
            return src.view(i)
        with self._lock:
            last, self._reader.last = getattr(self._reader, "last", None), i
            f = self._cache.get(i)
            if f is not None:
                self._cache.move_to_end(i)
                return f
            first = i
            if src.sequential and last is not None and i < last:
                first = max(0, i - self._block + 1)
            for j in range(first, i + 1):
                if j == i or j not in self._cache:
                    f = self._decode(j)
            return f

    def _decode(self, i: int) -> np.ndarray:
        """Frame i from the source, checked, into the cache (the lock held)."""
        src = self._src
        try:
            f = src.read(i)
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"{src.description} {self.path or self.name}: frame {i} could not "
                             f"be read ({short_error(err)}); the file may be damaged") from err
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
            if isinstance(self._src, FFmpegSource):
                self._src.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_video(path, cache_size: int = _DEFAULT_CACHE_FRAMES) -> Video:
    """Open a video file, a .gif, a folder of frames, a tif stack or a single image
    lazily, as a ``(T, H, W, 3) uint8`` :class:`Video`.

    Raises :class:`InputError` for a missing path, an unsupported or unreadable file,
    a truncated/corrupt video, zero frames, or a folder of differently sized frames.
    """
    p = as_path(path)
    if not p.exists():
        raise InputError(f"video {p} does not exist; check the path")
    if p.is_dir():
        src: FrameSource = FolderSource(p)
        name = p.resolve().name or str(p)
    else:
        kind = file_format(p)
        try:
            empty = p.stat().st_size == 0
        except OSError as err:
            raise InputError(f"video {p} could not be accessed ({short_error(err)}); check its "
                             "permissions") from err
        if kind is not None and empty:
            raise InputError(f"video {p} is an empty file (0 bytes); the copy or download "
                             "probably failed - get the file again")
        if kind is None:
            raise InputError(
                f"{p} has an unsupported extension '{p.suffix or '(none)'}'; give a video file "
                f"({' '.join(e for e in VIDEO_EXTENSIONS[:6])} .gif), a folder of frames "
                "(.jpg/.png) or a .tif stack")
        src = _SOURCES[kind](p)
        name = p.stem
    return Video(src, name=name, path=p, cache_size=cache_size)


def as_video(x, name: str | None = None) -> Video:
    """A :class:`Video` from a Video (returned as is), a path, or an array-like."""
    if isinstance(x, Video):
        return x
    if isinstance(x, (str, os.PathLike)):
        return open_video(x)
    return Video.from_array(x, name=name or "array")

