"""The propagation engine: value maps carried through video by restricted attention, and
label propagation on top of it (numpy in, numpy out; keypoints: :mod:`.tracking`).

Labels are carried as per-object probabilities at feature resolution (1/4 of the frame),
each cell with its sub-cell labels (``label_stride``, :mod:`.sub_cell_labels`), copied
from a reference memory through restricted attention:
  * every keyframe (the user's painted frames; the nearest ``max_keyframes`` in time),
  * with ``follow``, the chain's keyframe moved to where its objects are now
    (:mod:`.reference_shift`),
  * the last ``n_recent`` frames propagated in the current chain (soft labels).
Schedule: a frame t between keyframes a < t < b gets the forward chain from a and the
backward chain from b, fused (``fusion``: weights (b - t) / (b - a) for a's side, or also
by each side's confidence; "one-sided": forward only); before the first / after the last
keyframe one direction. Features go through a :class:`.feature_cache.FeatureCache`: each
frame is encoded once per run; a re-run after a correction (:func:`affected_range`) only
runs the attention, and its new chains stop where they settle onto the chains they
replace (``settle``, :mod:`.chain_reuse`). :func:`propagate` adds a confidence per frame
and object.
"""
from __future__ import annotations

import math
import threading
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from . import confidence as conf
from .chain_reuse import Settling, old_chain, old_values, side_keys
from .errors import InputError
from .feature_cache import FeatureCache, FrameEncoder, free_accelerator_memory, kept, scaled_size
from .full_size_labels import full_size_labels
from .keyframe_masks import check_keyframes
from .model.attention import ReferenceTiles, attend, value_table
from .model.features import FeatureExtractor
from .model.tile_recycler import TileRecycler
from .options import option
from .reference_shift import MAX_MOVED, moved_groups, moved_keyframe, object_shifts
from .schedule import affected_range, plan_chains, schedule
from .sub_cell_labels import (
    STRIDES,
    downsample_probs,
    drop_detail_of_absent,
    fine_probs,
    seed_values,
)
from .working_resolution import at_working_resolution

PropagationResult = conf.PropagationResult
__all__ = ["FUSIONS", "FrameEncoder", "FrameSides", "PropagationResult", "PropagationSettings",
           "affected_range", "check_frames", "downsample_probs", "feature_hw", "propagate",
           "propagate_labels", "propagate_sides", "propagate_values", "resize_nearest",
           "scaled_size", "schedule"]

ProgressFn = Callable[[int, int], None]
FUSIONS = ("distance", "confidence", "one-sided")


@dataclass(frozen=True)
class PropagationSettings:
    """Test-time protocol. Defaults chosen by measurement on the dev set (see README).

    ``max_keyframes`` is 1 by default: a later correction must win over an earlier
    keyframe that disagrees with it (see test_keyframe_correction_is_honoured).
    ``fusion``: how a frame between two keyframes combines the chains from both.
    """

    radius: int = field(default=8, metadata=option(
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
    max_size: int = field(default=480, metadata=option(
        "match frames at a short side of at most this many pixels; 0 = native",
        minimum=0, maximum=8192))
    fusion: str = field(default="distance", metadata=option(
        "frames between two keyframes: distance = both sides weighted by nearness; "
        "confidence = also by each side's confidence; one-sided = forward only",
        choices=FUSIONS))
    follow: bool = field(default=True, metadata=option(
        "also match the keyframe moved to where its objects are now (finds fast or "
        "hidden objects again); 0 = the keyframe where it was painted only"))
    min_mass: float = field(default=0.1, metadata=option(
        "object probabilities below this are dropped from each propagated frame (the "
        "attention then skips the cells far from every object); 0 = keep all",
        minimum=0.0, maximum=0.5))
    settle: float = field(default=0.05, metadata=option(
        "a re-run takes the old labels from where its new chain agrees with the old one "
        "to within this share of each object's mass for n_recent frames in a row (the "
        "correction's effect has faded); 0 = recompute every affected frame",
        minimum=0.0, maximum=0.5))
    label_stride: int | None = field(default=None, metadata=option(
        "label cell size in pixels: 1 or 2 = feature cells also carry sub-cell labels (thin "
        "parts survive; time grows with the objects); 4 = feature cells only", choices=STRIDES,
        none_means="auto: 1, or 4 with Lab colour features alone"))
    chunk_tiles: int | None = 512   # attention tiles at a time on a GPU (bounds memory)
    skip_far: bool | None = None    # label attention skips tiles far from objects; None: CPU


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


# --------------------------------------------------------------------------- engine


def _attend_oom_safe(query, refs, values, *, chunk_tiles, state: dict, **options):
    """:func:`attend` (``options``: its keywords) that, when the device runs out of memory,
    halves the number of tiles processed at once (down to 1) and retries, warning once;
    ``state['chunk']`` keeps the reduced size for the rest of the video."""
    while True:
        chunk = state.get("chunk", chunk_tiles)
        try:
            return attend(query, refs, values, chunk_tiles=chunk, **options)
        except torch.OutOfMemoryError:
            if chunk == 1:
                raise
            free_accelerator_memory(query.device)
            state["chunk"] = max(1, (chunk or 128) // 2)
            if not state.get("warned"):
                warnings.warn(f"{query.device.type.upper()} out of memory in the attention; "
                              f"retrying with {state['chunk']} tiles at a time (slower).",
                              RuntimeWarning, stacklevel=3)
                state["warned"] = True


class FrameSides(NamedTuple):
    """One computed frame: ``values`` (V, h, w) as reported (fused between two keyframes);
    ``forward`` / ``backward`` each chain's values (None for a side it does not have);
    ``w_forward`` the forward side's weight; ``sources`` (forward, backward) keyframes."""

    t: int
    values: torch.Tensor
    forward: torch.Tensor | None
    backward: torch.Tensor | None
    w_forward: float
    sources: tuple[int | None, int | None]


def propagate_sides(model: FeatureExtractor, frames, seeds: dict[int, torch.Tensor],
                    on_sides: Callable[[FrameSides], None], *,
                    settings: PropagationSettings | None = None, start: int = 0,
                    stop: int | None = None, direction: str = "both",
                    progress: ProgressFn | None = None,
                    cancel: threading.Event | None = None,
                    cache: FeatureCache | None = None, video_key=None,
                    n_labels: int | None = None) -> int:
    """:func:`propagate_values` reporting both sides of each frame (:class:`FrameSides`).
    Progress counts attention passes (a frame between two keyframes takes two).
    n_labels: the leading channels that are per-cell label probabilities when the rest
    are their sub-cell detail (:mod:`.sub_cell_labels`); None: all channels."""
    settings = settings or PropagationSettings()
    if settings.fusion not in FUSIONS:
        raise InputError(f"fusion must be one of {', '.join(FUSIONS)}, not {settings.fusion!r}.")
    t_total = len(frames)
    stop = t_total if stop is None else min(stop, t_total)
    keys = sorted(seeds)
    two_sided = direction == "both" and settings.fusion != "one-sided"
    plan = plan_chains(keys, t_total, start, stop, direction, two_sided)
    total = sum(len(c[1]) for pair in plan for c in pair if c is not None)
    # A caller's cache also keeps each chain's values: a re-run after a correction takes
    # the unchanged parts of the chains from it (keyed by source, direction and seed).
    side_key = side_keys(seeds, settings) if cache is not None else None
    if cache is None:                     # each frame encoded once per run, both sides
        cache, video_key = FeatureCache(), "run"
    encode = FrameEncoder(model, frames, settings.scale, cache=cache, video_key=video_key)
    # References are kept tiled for the attention (prepare_reference): each frame tiled once,
    # when it becomes a reference; the tiles of one no longer used are written over by the
    # next (fresh memory costs a page fault per 4 KB: most of the tiling).
    key_tiled: dict[int, list[ReferenceTiles]] = {}
    recycler = TileRecycler()
    oom: dict = {}                        # attention chunk size after an out-of-memory
    done = 0
    groups = model.affinity_groups()
    n = n_labels or next(iter(seeds.values())).shape[0]
    masses = {k: conf.object_mass(v[:n]) for k, v in seeds.items()}
    # label probabilities (every seed sums to 1 over V, channel 0 the background): the
    # attention skips the cells far from every object, faint object probabilities are
    # dropped (min_mass); other value maps (heatmaps) are carried as they are
    labels = all(bool((v >= 0).all()) and bool(((v[:n].sum(0) - 1).abs() < 1e-4).all())
                 for v in seeds.values())
    skip = labels and (model.device.type == "cpu" if settings.skip_far is None
                       else settings.skip_far)
    if progress:
        progress(0, total)

    def key_refs(source: int, t: int) -> list[int]:
        others = sorted((k for k in keys if k != source), key=lambda k: abs(k - t))
        return [source] + others[:max(0, settings.max_keyframes - 1)]

    def tiled(feat: torch.Tensor, valid: torch.Tensor | None = None) -> list[ReferenceTiles]:
        """One tiled reference per affinity group."""
        return [recycler.prepare(feat[None, g.start:g.stop], radius=settings.radius,
                                 metric=g.metric, ref_valid=None if valid is None else valid[None])
                for g in groups]

    moved_tiled: dict = {}                # (keyframe, shift, objects) -> (tiles, values)
    tables: dict = {}                     # values' shape -> value_table, reused

    def moved_refs(k: int, shifts: dict) -> list[tuple[list[ReferenceTiles], torch.Tensor]]:
        """Keyframe k moved to where its objects are now (see :mod:`.reference_shift`)."""
        out = []
        for shift, objects in moved_groups(seeds[k], shifts):
            key = (k, shift, objects)
            if key not in moved_tiled:
                if len(moved_tiled) > 2 * MAX_MOVED:
                    oldest = moved_tiled.pop(next(iter(moved_tiled)))
                    if not any(oldest is o for o in out):       # not in use this frame
                        recycler.release(oldest[0])
                feat = encode(k)
                feat, vals, usable = moved_keyframe(feat, seeds[k].to(feat.device), shift,
                                                    objects, n_labels=n)
                moved_tiled[key] = (tiled(feat, usable), vals)
            out.append(moved_tiled[key])
        return out

    def chain(source: int, targets: list[int]):
        """Yields (t, values) along one chain; ends early on cancel."""
        nonlocal done
        recent: deque = deque(maxlen=max(0, settings.n_recent))     # (t, values)
        recent_tiled: dict[int, list[ReferenceTiles]] = {}
        last_seen: dict = {}              # object -> its last shift (reference_shift)
        shifts: dict = {}                 # each object's shift in the previous frame
        encode.plan(targets)
        forward = bool(targets) and targets[0] > source
        was = old_chain(source, forward, keys) if labels and settings.settle > 0 else None
        old = old_values(cache, encode.key, side_key, was) if side_key and was else None
        settling = Settling(old, settings.settle, n, settings.n_recent)
        for t in targets:
            if cancel is not None and cancel.is_set():
                return
            stored = (encode.key(t, side_key(source, forward))
                      if side_key is not None else None)
            vals = cache.get(stored) if stored is not None else None
            if vals is None and (vals := settling.reuse(t)) is not None:
                cache.put(stored, vals)
            if vals is None:
                feat = encode(t)
                refs = key_refs(source, t)
                for k in [k for k in key_tiled if k not in refs]:
                    recycler.release(key_tiled.pop(k))     # tiled: only the keyframes in use
                for k in refs:
                    if k not in key_tiled:
                        key_tiled[k] = tiled(encode(k))
                for r, _ in recent:               # after values taken from the cache
                    if r not in recent_tiled:
                        recent_tiled[r] = tiled(encode(r))
                ref_tiles = [key_tiled[k] for k in refs] + [recent_tiled[r] for r, _ in recent]
                key_vals = [seeds[k].to(feat.device) for k in refs]
                if shifts:
                    for tiles, mv in moved_refs(source, shifts):
                        ref_tiles.insert(1, tiles)
                        key_vals.insert(1, mv)
                ref_vals = torch.stack(key_vals + [v for _, v in recent])[None]
                table = value_table(ref_vals, settings.radius, out=tables.get(ref_vals.shape)
                                    ) if settings.topk else None
                tables[ref_vals.shape] = table      # written over by the next frame's
                vals = sum(g.weight * _attend_oom_safe(       # the groups share one table
                    feat[None, g.start:g.stop], [r[i] for r in ref_tiles], ref_vals,
                    temperature=g.temperature, topk=settings.topk, table=table,
                    chunk_tiles=settings.chunk_tiles, state=oom, skip_empty=skip)[0]
                    for i, g in enumerate(groups))
                if labels:                # kept at half precision (feature_cache.KEPT_DTYPE)
                    conf.drop_faint(vals[:n], settings.min_mass)
                    vals = kept(drop_detail_of_absent(vals, n))
                if settings.n_recent:
                    recent_tiled[t] = tiled(feat)
                settling.computed(t, vals)
                if stored is not None:
                    cache.put(stored, vals)
            vals = vals.float()
            if settings.follow and settings.n_recent:   # for the next frame; cached too
                shifts = object_shifts(seeds[source][:n], vals[:n], last_seen)
            if settings.n_recent:
                recent.append((t, vals))
                in_use = {q for q, _ in recent}
                for r in [r for r in recent_tiled if r not in in_use]:
                    recycler.release(recent_tiled.pop(r))
            done += 1
            if progress:
                progress(done, total)
            yield t, vals

    with torch.inference_mode():
        for fwd, bwd in plan:
            if fwd is not None and bwd is not None:          # between two keyframes
                (a, f_targets), (b, b_targets) = fwd, bwd
                back = {t: v for t, v in chain(b, b_targets) if start <= t < stop}
                for t, v in ([] if cancel is not None and cancel.is_set()
                             else chain(a, f_targets)):
                    if t in back:
                        bv, w = back.pop(t), (b - t) / (b - a)
                        if settings.fusion == "confidence":
                            w = conf.fusion_weight(v[:n], bv[:n], w, (masses[a], masses[b]))
                        on_sides(FrameSides(t, w * v + (1 - w) * bv, v, bv, w, (a, b)))
            else:
                source, targets = fwd if fwd is not None else bwd
                forward = fwd is not None
                for t, v in chain(source, targets):
                    if start <= t < stop:
                        on_sides(FrameSides(t, v, v if forward else None,
                                            None if forward else v, float(forward),
                                            (source, None) if forward else (None, source)))
            if cancel is not None and cancel.is_set():
                break
    return encode.count


def propagate_values(model: FeatureExtractor, frames, seeds: dict[int, torch.Tensor],
                     on_frame: Callable[[int, torch.Tensor], None], *,
                     settings: PropagationSettings | None = None, start: int = 0,
                     stop: int | None = None, direction: str = "both",
                     progress: ProgressFn | None = None,
                     cancel: threading.Event | None = None,
                     cache: FeatureCache | None = None, video_key=None) -> int:
    """Propagate arbitrary value maps from seed frames through the video.

    seeds: {t: (V, h, w) tensor at feature resolution} (keyframe labels or heatmaps).
    Seeds that are label probabilities (summing to 1 over V, channel 0 the background)
    get ``settings.min_mass`` and the attention's skipping of cells far from every
    object; other value maps are carried unchanged.
    on_frame(t, values): called with each computed frame's (V, h, w) values (between two
    keyframes: the two sides fused); frames between two keyframes come in forward order
    once both sides are done. Frames in [start, stop) are reported; frames outside are
    computed only if a chain from a keyframe has to pass through them.
    cache / video_key: a FeatureCache kept between runs and this video's key in it.
    Returns the number of frames encoded (cache misses).
    """
    return propagate_sides(model, frames, seeds, lambda s: on_frame(s.t, s.values),
                           settings=settings, start=start, stop=stop, direction=direction,
                           progress=progress, cancel=cancel, cache=cache,
                           video_key=video_key)


# --------------------------------------------------------------------------- labels


def label_dtype(max_id: int) -> np.dtype:
    """Smallest unsigned dtype holding ids up to ``max_id`` (uint8 for <= 255)."""
    return next((np.dtype(d) for d in (np.uint8, np.uint16) if max_id <= np.iinfo(d).max),
                np.dtype(np.uint32))


def propagate(model: FeatureExtractor, frames, keyframes: dict[int, np.ndarray],
              progress: ProgressFn | None = None, cancel: threading.Event | None = None, *,
              settings: PropagationSettings | None = None, start: int = 0,
              stop: int | None = None, direction: str = "both",
              on_frame: Callable[[int, np.ndarray], None] | None = None,
              cache: FeatureCache | None = None, video_key=None,
              keep_labels: bool = True) -> PropagationResult:
    """Propagate keyframe masks to every frame, with a confidence per frame and object.

    frames: (T, H, W, 3) uint8 array-like (a lazy ``Video`` is fine).
    keyframes: {t: (H, W) integer ids, 0 = background}; returned unchanged.
    progress(done, total) per attention pass; ``cancel`` (threading.Event) stops at the
    next frame. on_frame(t, labels_t): called as each frame is finished ((H, W) array).
    start / stop: report only frames in [start, stop) (after a correction at k:
    :func:`affected_range`). cache / video_key: a FeatureCache kept between runs (e.g.
    per video) and the video's key in it (default: derived from ``frames``); without a
    cache each frame is still encoded once per run. keep_labels False: the labels only go
    to ``on_frame`` (a caller that stores them itself saves a (T, H, W) array: 2.5 GB for
    300 4K frames).
    Returns a :class:`~corrflow_napari.confidence.PropagationResult`: labels (T, H, W)
    (uint8 when ids <= 255; frames not computed are 0; None without keep_labels),
    confidence (T,) and object_confidence (T, N) in [0, 1] (NaN: not computed; 1:
    keyframes), object_ids (N,).
    """
    settings = settings or PropagationSettings()
    t_total, h, w = check_frames(frames)
    keys = check_keyframes(keyframes, t_total, h, w)
    settings = at_working_resolution(settings, h, w, keys)   # scale: max_size, small objects
    ids = np.unique(np.concatenate([np.unique(m) for m in keys.values()]))
    ids = np.union1d([0], ids)                                 # channel 0 = background
    dtype = label_dtype(int(ids.max()))
    out = np.zeros((t_total, h, w) if keep_labels else (0, h, w), dtype=dtype)
    stop = t_total if stop is None else min(stop, t_total)
    hs, ws = scaled_size(h, w, settings.scale)
    fhw = feature_hw(h, w, settings.scale)
    device = model.device
    seeds, stride = {}, settings.label_stride or model.label_stride
    for t, m in keys.items():
        channels = np.searchsorted(ids, resize_nearest(m, (hs, ws)))   # id -> channel
        onehot = F.one_hot(torch.from_numpy(channels), len(ids)).permute(2, 0, 1)
        seeds[t] = seed_values(onehot, fhw, stride).to(device)
    n = len(ids)                                               # per-cell label channels
    record = conf.Recorder(t_total, seeds, n)
    for t, m in keys.items():
        if start <= t < stop:
            if keep_labels:
                out[t] = m
            record.keyframe(t)
    ids_out = ids.astype(dtype)

    def write(s: FrameSides) -> None:
        lab = full_size_labels(fine_probs(s.values, stride), ids_out, (h, w), settings.scale,
                               stride)
        if keep_labels:
            out[s.t] = lab
        record(s)
        if on_frame is not None:
            on_frame(s.t, lab)

    propagate_sides(model, frames, seeds, write, settings=settings, start=start, stop=stop,
                    direction=direction, progress=progress, cancel=cancel, cache=cache,
                    video_key=video_key, n_labels=n)
    return record.result(out if keep_labels else None, ids[1:])


def propagate_labels(model: FeatureExtractor, frames, keyframes: dict[int, np.ndarray],
                     progress: ProgressFn | None = None,
                     cancel: threading.Event | None = None, *,
                     settings: PropagationSettings | None = None,
                     start: int = 0, stop: int | None = None, direction: str = "both",
                     on_frame: Callable[[int, np.ndarray], None] | None = None,
                     cache: FeatureCache | None = None, video_key=None) -> np.ndarray:
    """:func:`propagate`'s labels: (T, H, W), uint8 when ids <= 255; frames not computed
    (outside [start, stop), or after a cancel) are 0; keyframes are returned unchanged."""
    return propagate(model, frames, keyframes, progress, cancel, settings=settings,
                     start=start, stop=stop, direction=direction, on_frame=on_frame,
                     cache=cache, video_key=video_key).labels
