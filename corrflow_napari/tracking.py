"""Keypoint tracking: each point becomes a Gaussian heatmap carried through the video
by the propagation engine's restricted attention; the heatmaps' peaks are the tracks.

A track may be given on several frames (keyframes, like masks): the points sharing a
track id. Frame t of a track comes from its latest keyframe before t, going forward;
frames before its first keyframe from that keyframe, going backward. A point whose
heatmap vanishes (nothing left to match) is lost on that frame: NaN, not visible."""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .feature_cache import FeatureCache
from .model.attention import restricted_attention
from .model.features import AffinityGroup, FeatureExtractor
from .options import option
from .propagation import (
    FrameEncoder,
    ProgressFn,
    PropagationSettings,
    check_frames,
    downsample_probs,
    feature_hw,
    resize_nearest,
    scaled_size,
)
from .reference_shift import shift_cells
from .working_resolution import at_working_resolution

MOTIONS = ("velocity", "position", "none")


class Tracks(NamedTuple):
    """Result of :func:`track_points`: ``positions`` (T, K, 2) float (y, x) pixels (NaN:
    lost or not computed) and ``visible`` (T, K) bool, one column per track."""

    positions: np.ndarray
    visible: np.ndarray


def _tracking_propagation() -> PropagationSettings:
    """The engine's settings for tracking: top-3 matches, not the masks' top-10, and the
    paper's 13x13 window (M = 6; measured on BADJA), not the masks' 17x17."""
    return PropagationSettings(topk=3, radius=6)


# PropagationSettings fields that only concern masks: points have one keyframe per group
# (no second side to fuse), move their references with ``motion`` instead of ``follow``
# and drop faint heatmap values by ``roi_eps`` instead of ``min_mass``; a point has no
# sub-cell labels (``label_stride``)
MASK_ONLY_OPTIONS = ("max_keyframes", "fusion", "follow", "min_mass", "label_stride")


@dataclass(frozen=True)
class TrackSettings:
    """Keypoint tracking: the propagation engine's settings plus the Gaussian seed width,
    read-out, visibility, object-mask gating, reference motion and patch context.

    Defaults chosen by measurement on the BADJA dev sequences (``corrflow eval-badja``);
    the numbers are in docs/measurements-tracking.md. Of ``propagation``, the fields in
    :data:`MASK_ONLY_OPTIONS` do not apply.
    """

    propagation: PropagationSettings = field(default_factory=_tracking_propagation)
    sigma: float = 0.5            # heatmap std at feature resolution (cells)
    window: int = 2               # soft-argmax over (2w+1)^2 cells around the peak
    visible_threshold: float = field(default=0.1, metadata=option(
        "a point is visible while its heatmap peak is at least this fraction of its "
        "first frame's peak", minimum=0.0, maximum=1.0))
    mask_power: float = field(default=1.0, metadata=option(
        "with an object mask: heat x P(object)^power keeps points on the object (0: off)",
        minimum=0.0, maximum=10.0))
    roi_eps: float = 1e-3         # heat below roi_eps x its channel peak is dropped; the
                                  # attention then runs on the box around what is left
    motion: str = field(default="velocity", metadata=option(
        "where references are moved before matching: velocity (constant-velocity "
        "prediction), position (last position) or none", choices=MOTIONS))
    context: int | None = field(default=None, metadata=option(
        "match (2c+1)^2-cell patches of features instead of single cells",
        minimum=0, maximum=5, none_means="2 for Lab colour, 0 for learned features"))


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


def _attend_roi(groups: list[AffinityGroup], feats: list[torch.Tensor],
                ref_feats: list[torch.Tensor], ref_vals: torch.Tensor,
                settings: PropagationSettings, eps: float) -> torch.Tensor:
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
            topk=settings.topk, metric=g.metric, chunk_tiles=settings.chunk_tiles)[0]
    out[:, oy0:oy1, ox0:ox1] = res[:, oy0 - cy0:oy1 - cy0, ox0 - cx0:ox1 - cx0]
    return out


def _predict_points(history: list[torch.Tensor], motion: str) -> torch.Tensor:
    """(N, 2) cell positions expected in the next frame from the pass's history."""
    if motion == "velocity" and len(history) >= 2:
        v = (history[-1] - history[-2]).median(0).values     # the group's common motion
        return history[-1] + v
    return history[-1]


def _track_group(model: FeatureExtractor, encode: FrameEncoder, chains: list[list[int]],
                 t0: int, seed: torch.Tensor, fg_seed: torch.Tensor | None,
                 ts: TrackSettings, write: Callable[[int, torch.Tensor, torch.Tensor], None],
                 progress: Callable[[int], None], cancel: threading.Event | None) -> bool:
    """Propagate one group's heatmaps (N, h, w) from frame ``t0`` along each chain (the
    target frames in order, e.g. forward ``t0+1 ..`` or backward ``t0-1 ..``);
    ``write(t, cyx, peak)`` gets each frame's (N, 2) sub-cell peak positions and (N,) peak
    values of the (gated) heatmaps. The optional object channel ``fg_seed`` (1, h, w)
    travels with the heatmaps and gates them. References: frame ``t0`` and the last
    ``n_recent`` frames of the same chain, each shifted by whole cells so that its points
    sit where ``ts.motion`` predicts them. Returns False when cancelled."""
    n_recent = ts.propagation.n_recent
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
        return [shift_cells(f, dy, dx) for f in feats], shift_cells(vals, dy, dx)

    key_feat = features(t0)
    done = 0
    for targets in chains:
        recent: deque = deque(maxlen=max(0, n_recent))
        history = [key_cyx]
        encode.plan(targets)              # on a GPU: several frames per encoder call
        for t in targets:
            if cancel is not None and cancel.is_set():
                return False
            feat = features(t)
            target = _predict_points(history, ts.motion)
            refs = [placed(key_feat, key_vals, key_cyx, target)]
            refs += [placed(f, v, c, target) for f, v, c in recent]
            ref_feats = [torch.stack([f[i] for f, _ in refs]) for i in range(len(groups))]
            ref_vals = torch.stack([v for _, v in refs])
            vals = _attend_roi(groups, feat, ref_feats, ref_vals, ts.propagation, ts.roi_eps)
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


def _check_track_ids(track_ids, p: np.ndarray) -> np.ndarray:
    """(N,) track ids (default 0..N-1); one point per track and frame."""
    if track_ids is None:
        return np.arange(len(p))
    ids = np.asarray(track_ids)
    if ids.shape != (len(p),):
        raise InputError(f"track_ids must give one id per point: {len(p)} points but "
                         f"{ids.size} ids.")
    pairs = {}
    for i, (tid, t) in enumerate(zip(ids.tolist(), p[:, 0].astype(int).tolist())):
        if (tid, t) in pairs:
            raise InputError(f"track {tid} has two points on frame {t}; keep one point per "
                             "track and frame.")
        pairs[tid, t] = i
    return ids


def _plan_groups(p: np.ndarray, col: np.ndarray, t_total: int, start: int, stop: int):
    """``{t0: (point indices, chains, allowed (n, 2) [lo, hi) frames per point)}``: the
    frames each keyframe point writes (forward to its track's next keyframe, backward
    from its track's first keyframe only), within [start, stop), and the chains that
    compute them."""
    keys: dict[int, list[int]] = {}
    for t, c in zip(p[:, 0].astype(int), col):
        keys.setdefault(int(c), []).append(int(t))
    plan = {}
    for t0 in sorted(set(p[:, 0].astype(int).tolist())):
        idx = np.flatnonzero(p[:, 0] == t0)
        fwd_end = np.array([min([k for k in keys[col[i]] if k > t0] + [t_total]) for i in idx])
        first = np.array([min(keys[col[i]]) == t0 for i in idx])
        allowed = np.stack([np.where(first, 0, t0), fwd_end], 1).clip(start, stop)
        chains = []
        fwd_last = min(int(fwd_end.max()), stop) - 1
        if fwd_last > t0 and fwd_last >= start:
            chains.append(list(range(t0 + 1, fwd_last + 1)))
        if first.any() and start < t0:
            chains.append(list(range(t0 - 1, start - 1, -1)))
        plan[t0] = (idx, chains, allowed)
    return plan


def track_points(model: FeatureExtractor, frames, points,
                 progress: ProgressFn | None = None, cancel: threading.Event | None = None, *,
                 settings: TrackSettings | None = None,
                 object_masks: dict[int, np.ndarray] | None = None,
                 track_ids=None, start: int = 0, stop: int | None = None,
                 cache: FeatureCache | None = None, video_key=None) -> Tracks:
    """Track points through the video.

    points: (N, 3) rows of (t, y, x) in pixels; points may sit on different frames.
    track_ids: (N,) the track of each point (default: every point its own track). The
    points of one track are its keyframes (one per frame at most): frame t comes from the
    latest keyframe before t, going forward; frames before the first keyframe from it,
    going backward. Tracks are returned in the order their ids first appear.
    object_masks: optional {t: (H, W) mask, non-zero = the object the points lie on}; a
    mask on a points' frame is propagated with them and keeps them on the object.
    start / stop: compute only frames in [start, stop) (e.g. after moving a point on
    frame k: ``start=k``); other frames are NaN.
    cache / video_key: a FeatureCache kept between runs and the video's key in it.
    Returns Tracks(positions (T, K, 2) float (y, x) pixels, visible (T, K) bool). A
    keyframe returns its given position. NaN: lost (the heatmap vanished), not computed,
    or not reached (cancel).
    settings: :class:`TrackSettings` (default: ``TrackSettings()``); the propagation
    engine's settings are its ``propagation`` field.
    """
    ts = settings if settings is not None else TrackSettings()
    if not isinstance(ts, TrackSettings):
        raise TypeError(f"settings must be a TrackSettings, not {type(ts).__name__}; pass "
                        "propagation settings as TrackSettings(propagation=...).")
    if ts.motion not in MOTIONS:
        raise InputError(f"motion must be 'velocity', 'position' or 'none', not {ts.motion!r}.")
    t_total, h, w = check_frames(frames)
    p = _check_points(points, t_total, h, w)
    ids = _check_track_ids(track_ids, p)
    masks = _check_object_masks(object_masks, t_total, h, w)
    scale = at_working_resolution(ts.propagation, h, w, masks).scale   # max_size, small objects
    stop = t_total if stop is None else max(0, min(int(stop), t_total))
    start = max(0, int(start))
    order = list(dict.fromkeys(ids.tolist()))             # tracks by first appearance
    col = np.array([order.index(t) for t in ids.tolist()])
    pos = np.full((t_total, len(order), 2), np.nan)
    vis = np.zeros((t_total, len(order)), dtype=bool)
    hs, ws = scaled_size(h, w, scale)
    fhw = feature_hw(h, w, scale)
    plan = _plan_groups(p, col, t_total, start, stop)
    total = sum(len(c) for _, chains, _ in plan.values() for c in chains)
    device = model.device
    if cache is None:
        cache, video_key = FeatureCache(), "run"
    encode = FrameEncoder(model, frames, scale, cache=cache, video_key=video_key)
    done = 0
    if progress:
        progress(0, total)
    with torch.inference_mode():
        for t0, (idx, chains, allowed) in plan.items():
            cols = col[idx]
            if start <= t0 < stop:
                pos[t0, cols] = p[idx, 1:]
                vis[t0, cols] = True
            if not chains:
                continue
            seed = _gaussian_heatmaps(p[idx, 1:], fhw, scale, ts.sigma).to(device)
            fg_seed = None
            if t0 in masks:
                m = torch.from_numpy(resize_nearest(masks[t0].astype(np.int64), (hs, ws)))
                fg_seed = downsample_probs(m[None], fhw).to(device)
            seed_peak = _read_peaks(seed, ts.window)[1]

            def write(t: int, cyx: torch.Tensor, peak: torch.Tensor, cols=cols,
                      allowed=allowed, seed_peak=seed_peak) -> None:
                mine = (allowed[:, 0] <= t) & (t < allowed[:, 1])
                if not mine.any():
                    return
                pix = (cyx.double() * 4 + 1.5) / scale
                pix[:, 0].clamp_(0, h - 1)
                pix[:, 1].clamp_(0, w - 1)
                pix = pix.cpu().numpy()
                peak = peak.cpu().numpy()
                pix[peak <= 0] = np.nan                    # lost: no heat left anywhere
                pos[t, cols[mine]] = pix[mine]
                vis[t, cols[mine]] = (peak / seed_peak.cpu().numpy()
                                      >= ts.visible_threshold)[mine]

            def prog(n_done: int, base=done) -> None:
                if progress:
                    progress(base + n_done, total)

            if not _track_group(model, encode, chains, t0, seed, fg_seed, ts, write, prog,
                                cancel):
                break
            done += sum(len(c) for c in chains)
    return Tracks(pos, vis)
