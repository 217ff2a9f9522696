"""A frame's features: :class:`FrameEncoder` encodes frame t at the working scale, and a
:class:`FeatureCache` keeps encoder outputs between propagation runs, so that a re-run
after a correction only runs the attention.

A :class:`FeatureCache` holds ``(C, h, w)`` feature tensors in memory, bounded by bytes,
least recently used out. Entries are keyed by ``(video key, frame, model key, encoder
input size)``:

* video key: chosen by the caller (the widget: its Image layer; the CLI: the video
  path); :func:`video_key` derives one from the frames object when none is given;
* model key (:func:`model_key`): the model's class, a hash of its weights and buffers,
  its inference settings and its device, so new weights, a fine-tuned copy, another
  ``lab_mix`` or ``frame_bn`` never reuse old features;
* encoder input size ``(H', W')``: the frame size after the working-resolution scale,
  so a different scale never reuses old features.

Other values kept per frame (the engine keeps each propagation chain's soft labels, so a
re-run only recomputes the chains a correction changed) use the same four parts plus a
tag: ``(video, frame, model, size, tag...)``. A video's BatchNorm statistics (see
:class:`FrameEncoder`) are kept as ``(video, "bn-statistics", model, size)``.

The engine keeps the chains' soft labels at half precision (:data:`KEPT_DTYPE`, the
same whether cached or not): three objects' labels of a 720p frame take 2.6 MiB
instead of 5.1, beside 6.6 MiB of features (float32: at half precision they would move
logits by up to ~0.1). The default budget (:func:`default_max_bytes`) is a quarter of
the machine's memory, 2 to 16 GiB: with 2 GiB a 300-frame 720p clip with three
objects did not fit, and a re-run after a correction re-encoded the evicted start of
the video (1.1x the first run's time).

Thread-safe (the widgets run propagation in a worker thread). Qt-free.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: the precision propagated soft labels are kept in (see the module docstring)
KEPT_DTYPE = torch.float16


def kept(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to :data:`KEPT_DTYPE`, as the cache keeps it (use ``.float()``)."""
    return x.to(KEPT_DTYPE)


def default_max_bytes() -> int:
    """A quarter of the machine's memory, at least 2 and at most 16 GiB (2 GiB where the
    memory size is unknown): 2 GiB hold ~220 frames of a 720p video with three objects
    (features and one chain), 16 GiB ~1800."""
    gib = 1024 ** 3
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 2 * gib
    return int(min(16 * gib, max(2 * gib, total // 4)))


class FeatureCache:
    """In-memory LRU store of encoder outputs, at most ``max_bytes`` bytes of tensors
    (None: :func:`default_max_bytes`).

    ``get(key)`` returns the tensor or None (counted in ``hits`` / ``misses``) and marks
    it recently used; ``put(key, tensor)`` stores it and drops the least recently used
    entries until the total fits (a tensor larger than ``max_bytes`` is not stored).
    ``nbytes`` is the bytes held, ``clear()`` empties it, ``drop(video=...)`` forgets one
    video's frames.
    """

    def __init__(self, max_bytes: int | None = None):
        max_bytes = default_max_bytes() if max_bytes is None else max_bytes
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors held."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    def get(self, key: tuple) -> torch.Tensor | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: tuple, value: torch.Tensor) -> None:
        size = _nbytes(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= _nbytes(old)
            if size > self.max_bytes:
                return
            self._items[key] = value
            self._nbytes += size
            while self._nbytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._nbytes -= _nbytes(dropped)

    def drop(self, video: Hashable, features: bool = True) -> int:
        """Forget what is kept for video key ``video`` (with ``features=False`` only the
        other per-frame values, e.g. propagation chains, keeping the encoder outputs);
        returns the number of entries dropped."""
        with self._lock:
            keys = [k for k in self._items if k[0] == video and (features or len(k) > 4)]
            for k in keys:
                self._nbytes -= _nbytes(self._items.pop(k))
            return len(keys)

    def values_of(self, video: Hashable) -> dict[tuple, torch.Tensor]:
        """The entries of video key ``video`` other than encoder outputs (e.g. chains)."""
        with self._lock:
            return {k: v for k, v in self._items.items() if k[0] == video and len(k) > 4}

    def clear(self) -> None:
        """Forget everything (the hit and miss counters are kept)."""
        with self._lock:
            self._items.clear()
            self._nbytes = 0


def _nbytes(value) -> int:
    """Bytes of a tensor, or of the tensors in a (nested) list or tuple."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    return sum(_nbytes(v) for v in value)


def model_key(model) -> str:
    """A key that changes whenever ``model``'s features can change: ``"<name>:<hash>"``
    where the hash covers the class, every parameter and buffer (names, shapes, values),
    the inference settings (``model.inference``) and the device type. Two models loaded
    from the same weights share a key; a fine-tuned or edited model gets a new one.
    Costs one pass over the weights (a few ms for the shipped model)."""
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    h.update(repr(getattr(model, "inference", None)).encode())
    h.update(str(getattr(model, "device", "cpu")).split(":")[0].encode())
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes()
                 if t.dtype != torch.bfloat16 else t.detach().float().cpu().numpy().tobytes())
    return f"{getattr(model, 'name', type(model).__name__)}:{h.hexdigest()}"


def video_key(frames) -> tuple:
    """A key for a frames object when the caller names none: ``("frames", id(frames),
    shape, fingerprint)`` where the fingerprint hashes every 7th pixel of frame 0. The id
    alone could be reused by a new object after the old one is freed; the shape and frame
    0's pixels make a stale hit unlikely. Callers that have a stable name (a file path, a
    napari layer) should pass their own key, and drop it when the video's pixels change."""
    first = np.ascontiguousarray(np.asarray(frames[0])[::7, ::7])
    digest = hashlib.blake2b(first.tobytes(), digest_size=8).hexdigest()
    return ("frames", id(frames), tuple(int(s) for s in frames.shape), digest)


default_video_key = video_key


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """(H, W) of a frame resized by ``scale`` before encoding (at least 4 x 4 pixels)."""
    return max(4, int(round(h * scale))), max(4, int(round(w * scale)))


def _writable(a: np.ndarray) -> np.ndarray:
    """``a`` if torch may wrap it (writable, uint8-compatible layout), else a copy."""
    return a if a.flags.writeable and a.flags.c_contiguous else np.array(a, order="C")


def resize_rgb8(x: torch.Tensor, size: tuple[int, int],
                buffer: torch.Tensor | None = None) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, h, w, 3) uint8 at ``size`` (antialiased bilinear, rounded):
    how frames are brought to the working resolution before they are encoded. buffer: a
    float32 (N, 3, H, W) tensor to convert the frames into (reused from frame to frame, a
    4K frame's 100 MB are not faulted in afresh: 50 -> 19 ms); same result."""
    if buffer is not None and buffer.shape == (x.shape[0], 3) + tuple(x.shape[1:3]):
        x = buffer.copy_(x.permute(0, 3, 1, 2))
    else:
        x = x.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


class FrameEncoder:
    """Encodes frame t (uint8 (H, W, 3)) to (C, h, w) features, resizing by ``scale``.

    With a ``cache`` (:class:`FeatureCache`) features are
    looked up under ``(video_key, t, model_key(model), encoder input size)`` first and
    stored after encoding; ``video_key`` None derives one from the frames object
    (:func:`video_key`). ``count``: frames encoded. A model whose BatchNorm uses
    statistics of the video (``InferenceSettings.bn_frames``) gets them interpolated in
    time between that many evenly spaced frames, measured at the first encoding (and kept
    in the cache), so a frame's features do not depend on which frames a run encodes.
    On an accelerator with a cache, :meth:`plan` gives the order frames will be asked
    for: a miss then encodes up to ``batch`` planned frames at once (a GPU runs one
    frame's small convolutions far below its capacity; a batch takes about the launches
    of one frame).
    """

    batch = 8
    unbatched = ("cpu",)   # one frame at a time: the cores are busy anyway, results unchanged

    def __init__(self, model: nn.Module, frames, scale: float,
                 cache: FeatureCache | None = None, video_key=None):
        self.model, self.frames, self.scale = model, frames, scale
        self.count = 0
        self._cpu_model: nn.Module | None = None
        self.cache = cache
        self._ahead: dict[int, list[int]] = {}       # frame -> the planned frames after it
        self._measured: dict[int, torch.Tensor] = {}  # without a cache: sampled frames' features
        self._buffer: torch.Tensor | None = None     # a CPU frame as float32 (resize_rgb8)
        if cache is not None:
            h, w = int(frames.shape[1]), int(frames.shape[2])
            vkey = video_key if video_key is not None else default_video_key(frames)
            self._key = (vkey, model_key(model), scaled_size(h, w, scale))

    def key(self, t: int, what: tuple = ()) -> tuple:
        """The cache key of frame t's features (or, with ``what``, of other values kept
        for frame t of this video, model and size, e.g. a propagation chain's)."""
        vkey, mkey, size = self._key
        return (vkey, int(t), mkey, size) + tuple(what)

    def plan(self, order: list[int]) -> None:
        """Frames ``order`` will be asked for in this order (see the class docstring)."""
        if self.cache is not None and self.model.device.type not in self.unbatched \
                and self.batch > 1:
            self._ahead = {t: order[i + 1:i + self.batch] for i, t in enumerate(order)}

    def __call__(self, t: int) -> torch.Tensor:
        # the video's statistics first: the sampled frames' features come with them (into
        # the cache, or without one into _measured)
        if self.bn_statistics is not None and t in self._measured:
            return self._measured.pop(t)
        if self.cache is None:
            return self._encode(t)
        key = self.key(t)
        feat = self.cache.get(key)
        if feat is None:
            more = [u for u in self._ahead.get(t, []) if self.key(u) not in self.cache]
            if more and self._cpu_model is None:
                try:
                    feats = self._encode_batch([t] + more)
                except torch.OutOfMemoryError:       # one frame at a time from here on
                    free_accelerator_memory(self.model.device)
                    self._ahead = {}
                else:
                    for u, f in zip(more, feats[1:]):
                        self.cache.put(self.key(u), f)
                    self.cache.put(key, feats[0])
                    return feats[0]
            feat = self._encode(t)
            self.cache.put(key, feat)
        return feat

    def _input(self, ts: list[int], device) -> torch.Tensor:
        """(len(ts), h, w, 3) uint8 frames ``ts`` on ``device``, resized there by ``scale``
        one at a time (a few 4K frames as float would take ~100 MB each; counted as
        encoded)."""
        self.count += len(ts)
        if self.scale == 1.0 and len(ts) > 1:
            return torch.from_numpy(np.stack([np.asarray(self.frames[u]) for u in ts])).to(device)
        x = [self._one(t, device) for t in ts]
        return x[0] if len(x) == 1 else torch.cat(x)

    def _one(self, t: int, device) -> torch.Tensor:
        """(1, h, w, 3) uint8 frame t on ``device`` at the working size."""
        a = _writable(np.asarray(self.frames[t]))      # no copy (a 4K frame is 25 MB)
        x = torch.from_numpy(a.reshape((1,) + a.shape)).to(device)   # (not [None]: stride 0)
        if self.scale == 1.0:
            return x
        size = scaled_size(a.shape[0], a.shape[1], self.scale)
        if x.device.type != "cpu":                      # (accelerators reuse memory anyway)
            return resize_rgb8(x, size)
        if self._buffer is None or self._buffer.shape[2:] != a.shape[:2]:
            self._buffer = torch.empty((1, 3) + a.shape[:2])
        return resize_rgb8(x, size, self._buffer)

    @functools.cached_property
    def bn_statistics(self) -> tuple[list[int], list] | None:
        """The frames sampled and the model's ``video_statistics`` of them (None: the model
        needs none), measured once per video, model and size (looked up in the cache first)."""
        k = min(getattr(self.model, "statistics_frames", lambda: 0)(), len(self.frames))
        if k == 0:
            return None
        ts = np.linspace(0, len(self.frames) - 1, k).round().astype(int).tolist()
        key = None
        if self.cache is not None:
            vkey, mkey, size = self._key
            key = (vkey, "bn-statistics", mkey, size)
        stats = self.cache.get(key) if key is not None else None
        if stats is None:       # the sampled frames' features come with them: kept
            feats, stats = self.model.encode_measuring(self._input(ts, self.model.device))
            for t, f in zip(ts, feats):
                if self.cache is None:
                    self._measured[t] = f
                else:
                    self.cache.put(self.key(t), f)
            if key is not None:
                self.cache.put(key, stats)
        return ts, stats

    def _frame_statistics(self, ts: list[int], device) -> list | None:
        """BatchNorm statistics of frames ``ts`` ((len(ts), C) rows): linear in time between
        the sampled frames on either side (a fading or brightening video stays normalised)."""
        if self.bn_statistics is None:
            return None
        pos, stats = self.bn_statistics
        weights = np.stack([np.interp(ts, pos, hat) for hat in np.eye(len(pos))], 1)
        a = torch.from_numpy(weights.astype(np.float32)).to(device)
        return [(a @ m.to(device), a @ v.to(device)) for m, v in stats]

    def _run(self, model, x: torch.Tensor, ts: list[int]) -> torch.Tensor:
        stats = self._frame_statistics(ts, x.device)
        return model.encode(x) if stats is None else model.encode(x, bn_stats=stats)

    def _encode_batch(self, ts: list[int]) -> torch.Tensor:
        """(len(ts), C, h, w) features of frames ``ts`` in one encoder call."""
        return self._run(self.model, self._input(ts, self.model.device), ts)

    def _encode(self, t: int) -> torch.Tensor:
        x = self._input([t], "cpu")     # on the host: the CPU fallback below takes it too
        if self._cpu_model is None:
            try:
                return self._run(self.model, x, [t])[0]
            except torch.OutOfMemoryError:
                if self.model.device.type == "cpu":
                    raise
                free_accelerator_memory(self.model.device)
                warnings.warn(f"{self.model.device.type.upper()} out of memory while encoding "
                              f"frame {t}; encoding on the CPU from here on (slower). Use "
                              "--scale 0.5 or a smaller video to stay on the GPU.",
                              RuntimeWarning, stacklevel=2)
                self._cpu_model = copy.deepcopy(self.model).to("cpu")
        return self._run(self._cpu_model, x, [t])[0].to(self.model.device)


def free_accelerator_memory(device: torch.device) -> None:
    """Return cached accelerator memory to the driver (after an out-of-memory)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
