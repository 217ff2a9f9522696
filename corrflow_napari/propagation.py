"""Label and keypoint propagation through video (numpy in, numpy out).

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
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .model.attention import ReferenceTiles, attend, prepare_reference, restricted_attention
from .model.features import AffinityGroup, FeatureExtractor
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


class Tracks(NamedTuple):
    """Result of :func:`track_points`: ``positions`` (T, N, 2) float (y, x) pixels and
    ``visible`` (T, N) bool."""

    positions: np.ndarray
    visible: np.ndarray


# --------------------------------------------------------------------------- helpers


def _check_frames(frames) -> tuple[int, int, int]:
    shape = getattr(frames, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise InputError(f"frames must be a (T, H, W, 3) uint8 video, got shape {shape}; "
                         "open files with corrflow_napari.io.open_video.")
    t, h, w = int(shape[0]), int(shape[1]), int(shape[2])
    if t == 0:
        raise InputError("the video has no frames; check the file.")
    return t, h, w


def _scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(4, int(round(h * scale))), max(4, int(round(w * scale)))


class _Encoder:
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
            h, w = _scaled_size(frame.shape[0], frame.shape[1], self.scale)
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


def _downsample_probs(onehot: torch.Tensor, feat_hw: tuple[int, int]) -> torch.Tensor:
    """(V, H', W') 0/1 maps at encoder-input size -> (V, h, w) area-averaged probabilities."""
    v = F.avg_pool2d(onehot[None].float(), 4, 4, ceil_mode=True, count_include_pad=False)[0]
    return v[:, :feat_hw[0], :feat_hw[1]]


def _argmax0(x: torch.Tensor) -> torch.Tensor:
    """``x.argmax(0)`` for a few channels (first maximum wins ties), as a running
    comparison: an order of magnitude faster than a reduction over the outer dimension."""
    best = x[0]
    idx = torch.zeros(x.shape[1:], dtype=torch.int64, device=x.device)
    for v in range(1, x.shape[0]):
        idx.masked_fill_(x[v] > best, v)
        best = torch.maximum(best, x[v])
    return idx


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


def _schedule(keys: list[int], t_total: int, start: int, stop: int,
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
    segments = _schedule(keys, t_total, start, stop, direction)
    total = sum(sum(1 for t in tg if start <= t < stop) for _, tg in segments)
    encode = _Encoder(model, frames, settings.scale)
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


def _feature_hw(h: int, w: int, scale: float) -> tuple[int, int]:
    hs, ws = _scaled_size(h, w, scale)
    return math.ceil(hs / 4), math.ceil(ws / 4)


def _resize_nearest(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if mask.shape == tuple(hw):
        return mask
    t = torch.from_numpy(mask.astype(np.int64))[None, None].float()
    return F.interpolate(t, size=hw, mode="nearest")[0, 0].long().numpy()


# --------------------------------------------------------------------------- labels


def label_dtype(max_id: int) -> np.dtype:
    """Smallest unsigned dtype holding ids up to ``max_id`` (uint8 for <= 255)."""
    if max_id <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if max_id <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


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
    t_total, h, w = _check_frames(frames)
    keys = _check_keyframes(keyframes, t_total, h, w)
    ids = np.unique(np.concatenate([np.unique(m) for m in keys.values()]))
    ids = np.union1d([0], ids)                                 # channel 0 = background
    out = np.zeros((t_total, h, w), dtype=label_dtype(int(ids.max())))
    stop = t_total if stop is None else min(stop, t_total)
    for t, m in keys.items():
        if start <= t < stop:
            out[t] = m
    hs, ws = _scaled_size(h, w, settings.scale)
    fhw = _feature_hw(h, w, settings.scale)
    device = model.device
    seeds = {}
    for t, m in keys.items():
        channels = np.searchsorted(ids, _resize_nearest(m, (hs, ws)))   # id -> channel
        onehot = F.one_hot(torch.from_numpy(channels), len(ids)).permute(2, 0, 1)
        seeds[t] = _downsample_probs(onehot, fhw).to(device)
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


# --------------------------------------------------------------------------- keypoints


@dataclass(frozen=True)
class TrackSettings:
    """Keypoint tracking: Gaussian seed width, memory, read-out, visibility.

    Defaults chosen by measurement on the BADJA dev sequences (``corrflow eval-badja``,
    see README). ``None`` fields fall back to the :class:`PropagationSettings` value.
    """

    sigma: float = 0.5            # heatmap std at feature resolution (cells)
    window: int = 2               # soft-argmax over (2w+1)^2 cells around the peak
    visible_threshold: float = 0.1  # peak / seed peak below this -> not visible
    n_recent: int | None = None   # previous frames kept as references (None: settings')
    topk: int | None = 3          # matches kept per position (-1: settings'; None: all).
    #   3, not the masks' 10: a point wants its best matches, not a blend (BADJA mean
    #   PCK@0.2 with velocity: top-10 48.0, 5 51.2, 3 52.3, 2 50.5, 1 45.7)
    mask_power: float = 1.0       # with an object mask: heat *= P(object)^power (0: off)
    roi_eps: float = 1e-3         # heat below roi_eps x its channel peak is dropped; the
                                  # attention then runs on the box around what is left
    motion: str = "velocity"      # move each reference by whole cells to where its points are
    #   expected: "velocity" (last positions + the group's median last step), "position"
    #   (last positions) or "none"; lets points follow motion beyond the (2M+1)^2 window
    context: int | None = None    # match (2c+1)^2-cell patches of features. None: 2 (5x5
    #   cells = 20x20 px) for Lab colour (the baseline, or the Lab group of a mixture),
    #   whose single cells are ambiguous (BADJA: PCK@0.2 34.9 -> 47.0); 0 for learned
    #   features, which already see context and whose 25x wider patches cost > 9 s per
    #   480p frame on a 2-core CPU


def _gaussian_heatmaps(points_yx: np.ndarray, fhw: tuple[int, int], scale: float,
                       sigma: float) -> torch.Tensor:
    """(N, 2) pixel (y, x) -> (N, h, w) Gaussians centred at the points' feature coords."""
    h, w = fhw
    c = (torch.as_tensor(np.asarray(points_yx)).double() * scale - 1.5) / 4   # cell j = 4j+1.5
    yy = torch.arange(h, dtype=torch.float64)[None, :, None]
    xx = torch.arange(w, dtype=torch.float64)[None, None, :]
    g = torch.exp(-((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2)
                  / (2 * sigma ** 2))
    return g.float()


def _read_peaks(heat: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, h, w) heatmaps -> (N, 2) sub-cell (y, x) by soft-argmax around the peak, and the
    peak values."""
    n, h, w = heat.shape
    flat = heat.reshape(n, -1)
    peak, idx = flat.max(1)
    py, px = idx // w, idx % w
    offs = torch.arange(-window, window + 1, device=heat.device)
    ys = (py[:, None] + offs[None]).clamp(0, h - 1)             # N, k
    xs = (px[:, None] + offs[None]).clamp(0, w - 1)
    patch = heat[torch.arange(n, device=heat.device)[:, None, None], ys[:, :, None], xs[:, None, :]]
    valid_y = (py[:, None] + offs[None] >= 0) & (py[:, None] + offs[None] < h)
    valid_x = (px[:, None] + offs[None] >= 0) & (px[:, None] + offs[None] < w)
    wgt = patch.clamp_min(0) * (valid_y[:, :, None] & valid_x[:, None, :])
    s = wgt.sum((1, 2)).clamp_min(1e-12)
    cy = (wgt * ys[:, :, None]).sum((1, 2)) / s
    cx = (wgt * xs[:, None, :]).sum((1, 2)) / s
    return torch.stack([cy, cx], 1), peak


def _check_points(points, t_total: int, h: int, w: int) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise InputError(f"points must be an (N, 3) array of (t, y, x), got shape {p.shape}.")
    if len(p) == 0:
        raise InputError("no points given; place at least one point.")
    if not np.all(np.isfinite(p)):
        raise InputError("points contain NaN or infinite coordinates.")
    bad_t = (p[:, 0] < 0) | (p[:, 0] > t_total - 1) | (np.mod(p[:, 0], 1) != 0)
    if bad_t.any():
        i = int(np.flatnonzero(bad_t)[0])
        raise InputError(f"point {i} is on frame {p[i, 0]:g}, which does not exist "
                         f"(the video has frames 0..{t_total - 1}).")
    bad = (p[:, 1] < 0) | (p[:, 1] > h - 1) | (p[:, 2] < 0) | (p[:, 2] > w - 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"point {i} at (y={p[i, 1]:g}, x={p[i, 2]:g}) lies outside the "
                         f"{w}x{h} frame; place points inside the image.")
    return p


def _check_object_masks(masks, t_total: int, h: int, w: int) -> dict[int, np.ndarray]:
    if masks is None:
        return {}
    if not isinstance(masks, dict):
        raise InputError("object masks must be given as {frame: (H, W) mask}.")
    out = {}
    for t, m in masks.items():
        t = int(t)
        if not 0 <= t < t_total:
            raise InputError(f"object mask on frame {t}, which does not exist (the video has "
                             f"frames 0..{t_total - 1}).")
        m = np.asarray(m)
        if m.shape != (h, w):
            raise InputError(f"object mask for frame {t} has shape {m.shape}, but the video "
                             f"frames are {h}x{w} (H x W); give a mask of the video's size.")
        out[t] = m != 0
    return out


def _context_features(feat: torch.Tensor, c: int) -> torch.Tensor:
    """(C, h, w) -> (C (2c+1)^2, h, w): each cell's features with its neighbours' (edge
    cells repeated), scaled by 1/(2c+1) so that dot products and squared distances become
    patch means."""
    if c <= 0:
        return feat
    k = 2 * c + 1
    padded = F.pad(feat[None], (c, c, c, c), mode="replicate")
    h, w = feat.shape[-2:]
    cols = F.unfold(padded, k).reshape(1, -1, h, w)[0]
    return cols / k


def _shift_cells(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(..., h, w) moved by (dy, dx) cells: out[y + dy, x + dx] = x[y, x]; zeros enter."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _attend_roi(groups: list[AffinityGroup], feats: list[torch.Tensor],
                ref_feats: list[torch.Tensor], ref_vals: torch.Tensor,
                settings: PropagationSettings, topk: int | None, eps: float) -> torch.Tensor:
    """Restricted attention of ``ref_vals`` (R, V, h, w) into the target frame, mixed over
    the affinity ``groups`` (group i: target features ``feats[i]`` (C_i, h, w), reference
    features ``ref_feats[i]`` (R, C_i, h, w)), computed only on the box where it can be
    non-zero.

    Values below ``eps`` x their channel's maximum are zeroed first. A target position
    further than M cells from every remaining value receives 0; the softmax of a position
    within M cells only sees reference positions within 2M cells. So running the
    attention on the support's bounding box grown by 2M and keeping the box grown by M is
    exact (the crop's edge is only ever reached where the frame ends).
    """
    r = settings.radius
    v_n, h, w = ref_vals.shape[1:]
    peak = ref_vals.amax(dim=(0, 2, 3), keepdim=True)
    vals = torch.where(ref_vals >= eps * peak, ref_vals, torch.zeros((), dtype=ref_vals.dtype,
                                                                      device=ref_vals.device))
    out = torch.zeros(v_n, h, w, dtype=vals.dtype, device=vals.device)
    support = (vals > 0).flatten(0, 1).any(0)
    if not bool(support.any()):
        return out
    rows = torch.nonzero(support.any(1))[:, 0]
    cols = torch.nonzero(support.any(0))[:, 0]
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    cy0, cy1 = max(0, y0 - 2 * r), min(h, y1 + 2 * r)
    cx0, cx1 = max(0, x0 - 2 * r), min(w, x1 + 2 * r)
    oy0, oy1, ox0, ox1 = max(0, y0 - r), min(h, y1 + r), max(0, x0 - r), min(w, x1 + r)
    res = 0
    for g, f, rf in zip(groups, feats, ref_feats):
        res = res + g.weight * restricted_attention(
            f[None, :, cy0:cy1, cx0:cx1], rf[None, :, :, cy0:cy1, cx0:cx1],
            vals[None, :, :, cy0:cy1, cx0:cx1], radius=r, temperature=g.temperature,
            topk=topk, metric=g.metric, chunk_tiles=settings.chunk_tiles)[0]
    out[:, oy0:oy1, ox0:ox1] = res[:, oy0 - cy0:oy1 - cy0, ox0 - cx0:ox1 - cx0]
    return out


def _predict_points(history: list[torch.Tensor], motion: str) -> torch.Tensor:
    """(N, 2) cell positions expected in the next frame from the pass's history."""
    if motion == "velocity" and len(history) >= 2:
        v = (history[-1] - history[-2]).median(0).values     # the group's common motion
        return history[-1] + v
    return history[-1]


def _track_group(model: FeatureExtractor, encode: _Encoder, t_total: int, t0: int,
                 seed: torch.Tensor, fg_seed: torch.Tensor | None,
                 settings: PropagationSettings, ts: TrackSettings,
                 write: Callable[[int, torch.Tensor, torch.Tensor], None],
                 progress: Callable[[int], None], cancel: threading.Event | None) -> bool:
    """Propagate one group's heatmaps (N, h, w) from frame ``t0``, forward to the end and
    backward to frame 0; ``write(t, cyx, peak)`` gets each frame's (N, 2) sub-cell peak
    positions and (N,) peak values of the (gated) heatmaps. The optional object channel
    ``fg_seed`` (1, h, w) travels with the heatmaps and gates them. References: frame
    ``t0`` and the last ``n_recent`` frames of the same pass, each shifted by whole cells
    so that its points sit where ``ts.motion`` predicts them. Returns False when
    cancelled."""
    if ts.motion not in ("velocity", "position", "none"):
        raise InputError(f"motion must be 'velocity', 'position' or 'none', not {ts.motion!r}.")
    n_recent = settings.n_recent if ts.n_recent is None else ts.n_recent
    topk = settings.topk if ts.topk == -1 else ts.topk
    n = seed.shape[0]
    key_vals = seed if fg_seed is None else torch.cat([seed, fg_seed])
    groups = model.affinity_groups()
    contexts = [ts.context if ts.context is not None else (2 if g.colour else 0)
                for g in groups]
    key_cyx = _read_peaks(seed, ts.window)[0].double()

    def features(t: int) -> list[torch.Tensor]:
        """One (C_i, h, w) feature map per affinity group, with its patch context."""
        f = encode(t)
        return [_context_features(f[g.start:g.stop], c) for g, c in zip(groups, contexts)]

    def placed(feats, vals, cyx, target):
        if ts.motion == "none":
            return feats, vals
        dy, dx = (int(v) for v in torch.round((target - cyx).median(0).values).tolist())
        return [_shift_cells(f, dy, dx) for f in feats], _shift_cells(vals, dy, dx)

    key_feat = features(t0)
    done = 0
    for _source, targets in _schedule([t0], t_total, 0, t_total, "both"):
        recent: deque = deque(maxlen=max(0, n_recent))
        history = [key_cyx]
        for t in targets:
            if cancel is not None and cancel.is_set():
                return False
            feat = features(t)
            target = _predict_points(history, ts.motion)
            refs = [placed(key_feat, key_vals, key_cyx, target)]
            refs += [placed(f, v, c, target) for f, v, c in recent]
            ref_feats = [torch.stack([f[i] for f, _ in refs]) for i in range(len(groups))]
            ref_vals = torch.stack([v for _, v in refs])
            vals = _attend_roi(groups, feat, ref_feats, ref_vals, settings, topk, ts.roi_eps)
            heat = vals[:n]
            if fg_seed is not None and ts.mask_power > 0:     # keep the heat on the object
                heat = heat * vals[n:].clamp(0, 1) ** ts.mask_power
            vals = torch.cat([heat, vals[n:]])
            cyx, peak = _read_peaks(heat, ts.window)
            write(t, cyx, peak)
            history.append(cyx.double())
            if n_recent:
                recent.append((feat, vals, cyx.double()))
            done += 1
            progress(done)
    return True


def track_points(model: FeatureExtractor, frames, points,
                 progress: ProgressFn | None = None, cancel: threading.Event | None = None, *,
                 settings: PropagationSettings | None = None,
                 track_settings: TrackSettings | None = None,
                 object_masks: dict[int, np.ndarray] | None = None) -> Tracks:
    """Track points through the video.

    points: (N, 3) rows of (t, y, x) in pixels; points may sit on different frames. Each
    frame's points are tracked forward to the end and backward to frame 0.
    object_masks: optional {t: (H, W) mask, non-zero = the object the points lie on}; a
    mask on a points' frame is propagated with them and keeps them on the object.
    Returns Tracks(positions (T, N, 2) float (y, x) pixels, visible (T, N) bool). Each
    point's own frame returns its given position. Frames not reached (cancel) are NaN.
    """
    settings = settings or PropagationSettings()
    ts = track_settings or TrackSettings()
    t_total, h, w = _check_frames(frames)
    p = _check_points(points, t_total, h, w)
    masks = _check_object_masks(object_masks, t_total, h, w)
    n = len(p)
    pos = np.full((t_total, n, 2), np.nan)
    vis = np.zeros((t_total, n), dtype=bool)
    hs, ws = _scaled_size(h, w, settings.scale)
    fhw = _feature_hw(h, w, settings.scale)
    groups = {int(t): np.flatnonzero(p[:, 0] == t) for t in np.unique(p[:, 0])}
    per_group = t_total - 1
    total = per_group * len(groups)
    device = model.device
    encode = _Encoder(model, frames, settings.scale)
    if progress:
        progress(0, total)
    with torch.inference_mode():
        for gi, (t0, idx) in enumerate(sorted(groups.items())):
            seed = _gaussian_heatmaps(p[idx, 1:], fhw, settings.scale, ts.sigma).to(device)
            fg_seed = None
            if t0 in masks:
                m = torch.from_numpy(_resize_nearest(masks[t0].astype(np.int64), (hs, ws)))
                fg_seed = _downsample_probs(m[None], fhw).to(device)
            pos[t0, idx] = p[idx, 1:]
            vis[t0, idx] = True

            seed_peak = _read_peaks(seed, ts.window)[1]

            def write(t: int, cyx: torch.Tensor, peak: torch.Tensor, idx=idx,
                      seed_peak=seed_peak) -> None:
                pix = (cyx.double() * 4 + 1.5) / settings.scale
                pix[:, 0].clamp_(0, h - 1)
                pix[:, 1].clamp_(0, w - 1)
                pos[t, idx] = pix.cpu().numpy()
                vis[t, idx] = (peak / seed_peak >= ts.visible_threshold).cpu().numpy()

            def prog(done: int, base=gi * per_group) -> None:
                if progress:
                    progress(base + done, total)

            if not _track_group(model, encode, t_total, t0, seed, fg_seed, settings, ts,
                                write, prog, cancel):
                break
    return Tracks(pos, vis)


def with_settings(settings: PropagationSettings | None, **changes) -> PropagationSettings:
    """Copy of ``settings`` (or the defaults) with ``changes`` applied (None values ignored)."""
    return replace(settings or PropagationSettings(),
                   **{k: v for k, v in changes.items() if v is not None})
