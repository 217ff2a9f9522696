"""The propagation engine: value maps carried through video by restricted attention, and
label propagation on top of it (numpy in, numpy out; keypoints: :mod:`.tracking`).

Labels are carried as per-object probabilities at feature resolution (1/4 of the frame),
copied from a reference memory through restricted attention:
  * every keyframe (the user's painted frames; the nearest ``max_keyframes`` in time),
  * the last ``n_recent`` frames propagated in the current segment (soft labels).
Schedule: forward from each keyframe until the next one, backward before the first.
Each frame is encoded exactly once; results are upsampled to the full frame size.
"""
from __future__ import annotations

import copy
import math
import threading
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .model.attention import ReferenceTiles, attend, prepare_reference
from .model.features import FeatureExtractor
from .options import option

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class PropagationSettings:
    """Test-time protocol. Defaults chosen by measurement on the dev set (see README).

    ``max_keyframes`` is 1 by default: a later correction must win over an earlier
    keyframe that disagrees with it (see test_keyframe_correction_is_honoured).
    """

    radius: int = field(default=6, metadata=option(
        "window radius M at feature resolution (the window is (2M+1)^2 cells)",
        minimum=1, maximum=32))
    topk: int | None = field(default=10, metadata=option(
        "matches kept per position", minimum=1, maximum=10000, none_means="all matches"))
    n_recent: int = field(default=3, metadata=option(
        "previously propagated frames kept as references", minimum=0, maximum=32))
    max_keyframes: int = field(default=1, metadata=option(
        "keyframes used as references (the segment's own first, then the nearest)",
        minimum=1, maximum=32))
    scale: float = field(default=1.0, metadata=option(
        "resize frames by this factor before matching (0.5: about 4x faster, coarser)",
        minimum=0.05, maximum=1.0))
    chunk_tiles: int | None = 128   # attention tiles per batch (bounds peak memory)


# --------------------------------------------------------------------------- frames


def check_frames(frames) -> tuple[int, int, int]:
    """(T, H, W) of a (T, H, W, 3) video; InputError for anything else or no frames."""
    shape = getattr(frames, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise InputError(f"frames must be a (T, H, W, 3) uint8 video, got shape {shape}; "
                         "open files with corrflow_napari.io.open_video.")
    t, h, w = int(shape[0]), int(shape[1]), int(shape[2])
    if t == 0:
        raise InputError("the video has no frames; check the file.")
    return t, h, w


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """(H, W) of a frame resized by ``scale`` before encoding (at least 4 x 4 pixels)."""
    return max(4, int(round(h * scale))), max(4, int(round(w * scale)))


def feature_hw(h: int, w: int, scale: float) -> tuple[int, int]:
    """(h, w) of the features of an (H, W) frame encoded at ``scale`` (stride 4)."""
    hs, ws = scaled_size(h, w, scale)
    return math.ceil(hs / 4), math.ceil(ws / 4)


def resize_nearest(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) integer mask -> (h, w) by nearest-neighbour sampling (int64 when resized)."""
    if mask.shape == tuple(hw):
        return mask
    t = torch.from_numpy(mask.astype(np.int64))[None, None].float()
    return F.interpolate(t, size=hw, mode="nearest")[0, 0].long().numpy()


def downsample_probs(onehot: torch.Tensor, feat_hw: tuple[int, int]) -> torch.Tensor:
    """(V, H', W') 0/1 maps at encoder-input size -> (V, h, w) area-averaged probabilities."""
    v = F.avg_pool2d(onehot[None].float(), 4, 4, ceil_mode=True, count_include_pad=False)[0]
    return v[:, :feat_hw[0], :feat_hw[1]]


def _upsample(values: torch.Tensor, out_hw: tuple[int, int], scale: float) -> torch.Tensor:
    """(V, h, w) feature-resolution maps -> (V, H, W) at full frame size (bilinear)."""
    h, w = values.shape[-2:]
    size = (int(round(4 * h / scale)), int(round(4 * w / scale)))
    up = F.interpolate(values[None], size=size, mode="bilinear", align_corners=False)[0]
    up = up[:, :out_hw[0], :out_hw[1]]
    if up.shape[-2:] != tuple(out_hw):   # rounding at the border: pad by replication
        up = F.pad(up[None], (0, out_hw[1] - up.shape[-1], 0, out_hw[0] - up.shape[-2]),
                   mode="replicate")[0]
    return up


# --------------------------------------------------------------------------- engine


class FrameEncoder:
    """Encodes frame t (uint8 (H, W, 3)) to (C, h, w) features, resizing by ``scale``."""

    def __init__(self, model: FeatureExtractor, frames, scale: float):
        self.model, self.frames, self.scale = model, frames, scale
        self.count = 0
        self._cpu_model: FeatureExtractor | None = None

    def __call__(self, t: int) -> torch.Tensor:
        frame = np.asarray(self.frames[t])
        self.count += 1
        x = torch.from_numpy(np.ascontiguousarray(frame))[None]
        if self.scale != 1.0:
            h, w = scaled_size(frame.shape[0], frame.shape[1], self.scale)
            x = F.interpolate(x.permute(0, 3, 1, 2).float(), size=(h, w), mode="bilinear",
                              align_corners=False, antialias=True)
            x = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        if self._cpu_model is None:
            try:
                return self.model.encode(x)[0]
            except torch.OutOfMemoryError:
                if self.model.device.type == "cpu":
                    raise
                _free_accelerator_memory(self.model.device)
                warnings.warn(f"{self.model.device.type.upper()} out of memory while encoding "
                              f"frame {t}; encoding on the CPU from here on (slower). Use "
                              "--scale 0.5 or a smaller video to stay on the GPU.",
                              RuntimeWarning, stacklevel=2)
                self._cpu_model = copy.deepcopy(self.model).to("cpu")
        return self._cpu_model.encode(x)[0].to(self.model.device)


def _free_accelerator_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def _attend_oom_safe(query, refs, values, *, temperature, topk, chunk_tiles, state: dict):
    """:func:`attend` that, when the device runs out of memory, halves the number of
    tiles processed at once (down to 1) and retries, warning once; ``state['chunk']``
    keeps the reduced size for the rest of the video."""
    while True:
        chunk = state.get("chunk", chunk_tiles)
        try:
            return attend(query, refs, values, temperature=temperature, topk=topk,
                          chunk_tiles=chunk)
        except torch.OutOfMemoryError:
            if chunk == 1:
                raise
            _free_accelerator_memory(query.device)
            state["chunk"] = max(1, (chunk or 128) // 2)
            if not state.get("warned"):
                warnings.warn(f"{query.device.type.upper()} out of memory in the attention; "
                              f"retrying with {state['chunk']} tiles at a time (slower).",
                              RuntimeWarning, stacklevel=3)
                state["warned"] = True


def schedule(keys: list[int], t_total: int, start: int, stop: int,
              direction: str) -> list[tuple[int, list[int]]]:
    """Segments ``(source keyframe, [target frames in order])``.

    forward: k_i+1 .. k_{i+1}-1; backward: k_i-1 .. k_{i-1}+1; both: forward from every
    keyframe and backward only before the first. Targets are clipped to [start, stop).
    """
    if direction not in ("forward", "backward", "both"):
        raise InputError(f"direction must be forward, backward or both, not {direction!r}.")
    segments = []
    if direction in ("forward", "both"):
        for i, k in enumerate(keys):
            end = keys[i + 1] if i + 1 < len(keys) else t_total
            targets = list(range(k + 1, min(end, stop)))
            if targets and targets[-1] >= start:
                segments.append((k, targets))
    backward_keys = keys[:1] if direction == "both" else keys
    if direction in ("backward", "both"):
        for k in backward_keys:
            i = keys.index(k)
            end = keys[i - 1] if i > 0 else -1
            targets = list(range(k - 1, max(end, start - 1), -1))
            if targets:
                segments.append((k, targets))
    return segments


def propagate_values(model: FeatureExtractor, frames, seeds: dict[int, torch.Tensor],
                     on_frame: Callable[[int, torch.Tensor], None], *,
                     settings: PropagationSettings | None = None, start: int = 0,
                     stop: int | None = None, direction: str = "both",
                     progress: ProgressFn | None = None,
                     cancel: threading.Event | None = None) -> int:
    """Propagate arbitrary value maps from seed frames through the video.

    seeds: {t: (V, h, w) tensor at feature resolution} (keyframe labels or heatmaps).
    on_frame(t, values): called with each computed frame's (V, h, w) values, in order.
    Frames in [start, stop) are reported; frames outside are computed only if a chain
    from a keyframe has to pass through them. Returns the number of frames encoded.
    """
    settings = settings or PropagationSettings()
    t_total = len(frames)
    stop = t_total if stop is None else min(stop, t_total)
    keys = sorted(seeds)
    segments = schedule(keys, t_total, start, stop, direction)
    total = sum(sum(1 for t in tg if start <= t < stop) for _, tg in segments)
    encode = FrameEncoder(model, frames, settings.scale)
    # References are kept tiled for the attention (prepare_reference): each frame's
    # features are tiled once, when it becomes a reference, not once per use.
    key_feats: dict[int, torch.Tensor] = {}
    key_tiled: dict[int, ReferenceTiles] = {}
    done = 0
    oom: dict = {}                        # attention chunk size after an out-of-memory
    if progress:
        progress(0, total)

    def key_refs(source: int, t: int) -> list[int]:
        others = sorted((k for k in keys if k != source), key=lambda k: abs(k - t))
        return [source] + others[:max(0, settings.max_keyframes - 1)]

    groups = model.affinity_groups()

    def tiled(feat: torch.Tensor) -> list[ReferenceTiles]:
        """One tiled reference per affinity group."""
        return [prepare_reference(feat[None, g.start:g.stop], radius=settings.radius,
                                  metric=g.metric) for g in groups]

    with torch.inference_mode():
        for source, targets in segments:
            recent: deque = deque(maxlen=max(0, settings.n_recent))
            for t in targets:
                if cancel is not None and cancel.is_set():
                    return encode.count
                feat = encode(t)
                refs = key_refs(source, t)
                for k in [k for k in key_tiled if k not in refs]:
                    del key_tiled[k]                  # tiled: only the keyframes in use
                for k in refs:
                    if k not in key_feats:
                        key_feats[k] = encode(k)
                    if k not in key_tiled:
                        key_tiled[k] = tiled(key_feats[k])
                ref_tiles = [key_tiled[k] for k in refs] + [f for f, _ in recent]
                ref_vals = torch.stack([seeds[k].to(feat.device) for k in refs]
                                       + [v for _, v in recent])[None]
                vals = sum(g.weight * _attend_oom_safe(
                    feat[None, g.start:g.stop], [r[i] for r in ref_tiles], ref_vals,
                    temperature=g.temperature, topk=settings.topk,
                    chunk_tiles=settings.chunk_tiles, state=oom)[0]
                    for i, g in enumerate(groups))
                if settings.n_recent:
                    recent.append((tiled(feat), vals))
                if start <= t < stop:
                    on_frame(t, vals)
                    done += 1
                    if progress:
                        progress(done, total)
    return encode.count


# --------------------------------------------------------------------------- labels


def label_dtype(max_id: int) -> np.dtype:
    """Smallest unsigned dtype holding ids up to ``max_id`` (uint8 for <= 255)."""
    if max_id <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if max_id <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def _argmax0(x: torch.Tensor) -> torch.Tensor:
    """``x.argmax(0)`` for a few channels (first maximum wins ties), as a running
    comparison: an order of magnitude faster than a reduction over the outer dimension."""
    best = x[0]
    idx = torch.zeros(x.shape[1:], dtype=torch.int64, device=x.device)
    for v in range(1, x.shape[0]):
        idx.masked_fill_(x[v] > best, v)
        best = torch.maximum(best, x[v])
    return idx


def _check_keyframes(keyframes: dict, t_total: int, h: int, w: int) -> dict[int, np.ndarray]:
    if not keyframes:
        raise InputError("no keyframe mask given; paint at least one frame (or pass --mask).")
    out = {}
    for t, m in keyframes.items():
        t = int(t)
        if not -t_total <= t < t_total:
            raise InputError(f"keyframe {t} is out of range: the video has {t_total} frames "
                             f"(0..{t_total - 1}).")
        t = t % t_total
        m = np.asarray(m)
        if m.shape != (h, w):
            raise InputError(f"mask for frame {t} is {m.shape[1] if m.ndim > 1 else '?'}x"
                             f"{m.shape[0]} but the video frames are {w}x{h}; "
                             "give a mask of the video's size.")
        if not np.issubdtype(m.dtype, np.integer) and m.dtype != bool:
            if not np.all(np.mod(m, 1) == 0):
                raise InputError(f"mask for frame {t} holds non-integer values; "
                                 "give integer object ids (0 = background).")
        if np.any(m < 0):
            raise InputError(f"mask for frame {t} has negative ids; use 0 for background "
                             "and 1..N for objects.")
        if t in out:
            raise InputError(f"two masks given for frame {t}; give one mask per frame.")
        out[t] = m.astype(np.int64)
    if not any(np.any(m > 0) for m in out.values()):
        raise InputError("the keyframe masks contain no object (all pixels are 0); "
                         "paint at least one object.")
    return out


def propagate_labels(model: FeatureExtractor, frames, keyframes: dict[int, np.ndarray],
                     progress: ProgressFn | None = None,
                     cancel: threading.Event | None = None, *,
                     settings: PropagationSettings | None = None,
                     start: int = 0, stop: int | None = None, direction: str = "both",
                     on_frame: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
    """Propagate keyframe masks to every frame.

    frames: (T, H, W, 3) uint8 array-like (a lazy ``Video`` is fine).
    keyframes: {t: (H, W) integer ids, 0 = background}; returned unchanged.
    progress(done, total) per frame; ``cancel`` (threading.Event) stops at the next frame.
    on_frame(t, labels_t): called as each frame is finished ((H, W) array).
    Returns (T, H, W) labels (uint8 when ids <= 255); frames not computed (outside
    [start, stop), or after a cancel) are 0.
    """
    settings = settings or PropagationSettings()
    t_total, h, w = check_frames(frames)
    keys = _check_keyframes(keyframes, t_total, h, w)
    ids = np.unique(np.concatenate([np.unique(m) for m in keys.values()]))
    ids = np.union1d([0], ids)                                 # channel 0 = background
    out = np.zeros((t_total, h, w), dtype=label_dtype(int(ids.max())))
    stop = t_total if stop is None else min(stop, t_total)
    for t, m in keys.items():
        if start <= t < stop:
            out[t] = m
    hs, ws = scaled_size(h, w, settings.scale)
    fhw = feature_hw(h, w, settings.scale)
    device = model.device
    seeds = {}
    for t, m in keys.items():
        channels = np.searchsorted(ids, resize_nearest(m, (hs, ws)))   # id -> channel
        onehot = F.one_hot(torch.from_numpy(channels), len(ids)).permute(2, 0, 1)
        seeds[t] = downsample_probs(onehot, fhw).to(device)
    ids_t = torch.from_numpy(ids.astype(np.int64)).to(device)

    def write(t: int, vals: torch.Tensor) -> None:
        probs = _upsample(vals, (h, w), settings.scale)
        lab = ids_t[_argmax0(probs)].cpu().numpy().astype(out.dtype)
        out[t] = lab
        if on_frame is not None:
            on_frame(t, lab)

    propagate_values(model, frames, seeds, write, settings=settings, start=start, stop=stop,
                     direction=direction, progress=progress, cancel=cancel)
    return out
