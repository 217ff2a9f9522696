"""napari layers <-> the arrays the core takes and returns. Qt-free: works on layer
objects (or anything with the same attributes) without a viewer.

* :func:`video_frames`: an Image layer as (T, H, W, 3) uint8 frames,
* :func:`current_frame`: the frame the viewer shows,
* :func:`show_frame`: move the viewer to a frame,
* :func:`points_input`: a Points layer as (N, 3) t, y, x rows and track ids,
* :func:`tracks_layer_data`: tracking results as Tracks / Points layer data.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..io import to_rgb8


def video_frames(layer) -> object:
    """The (T, H, W, 3) uint8 frames of an Image layer, as the core expects them.

    RGB(A) uint8 layers (and the reader's lazy videos) are used as they are (alpha
    dropped lazily); grey or other-dtype stacks are mapped to uint8 through the layer's
    contrast limits (what the user sees) and repeated to 3 channels, one frame at a time.
    """
    if layer is None:
        raise InputError("no video: open a video (File > Open) or the sample "
                         "(File > Open Sample > corrflow-napari) and pick its Image layer.")
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    if layer.rgb:
        if data.ndim != 4:
            raise InputError(f"Image layer '{layer.name}' is a single RGB picture, not a "
                             "video; open a video or a stack of frames.")
        if data.shape[-1] == 3 and np.dtype(data.dtype) == np.uint8:
            return data
    elif data.ndim != 3:
        raise InputError(f"Image layer '{layer.name}' has shape {tuple(data.shape)}; a video "
                         "must be (frames, height, width) or (frames, height, width, 3).")
    return RGBView(data, layer.contrast_limits)


class RGBView:
    """Lazy (T, H, W, 3) uint8 view of a (T, H, W) grey or (T, H, W, 3|4) stack: values
    in ``limits`` (low, high) map to 0..255 (io's frame-to-RGB conversion), alpha dropped.
    """

    def __init__(self, data, limits):
        self.data = data
        self.limits = (float(limits[0]), float(limits[1]))
        self.shape = tuple(data.shape[:3]) + (3,)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as (H, W, 3) uint8."""
        f = np.asarray(self.data[t])
        if f.dtype == np.uint8 and self.limits != (0.0, 255.0):
            f = f.astype(np.float32)          # uint8 with other limits: rescale too
        return to_rgb8(f, self.limits)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.frame(int(index))
        return np.asarray(self)[index]

    def __array__(self, dtype=None, copy=None):
        out = np.stack([self.frame(t) for t in range(self.shape[0])])
        return out if dtype is None else out.astype(dtype)


def current_frame(viewer, layer) -> int:
    """Index (along the layer's first axis) of the frame the viewer shows."""
    pos = layer.world_to_data(viewer.dims.point)
    t = int(round(float(pos[0])))
    return min(max(t, 0), layer.data.shape[0] - 1)


def show_frame(viewer, layer, t: int) -> None:
    """Move the viewer to frame ``t`` of ``layer`` (its first axis)."""
    pos = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)
    pos[0] = t
    axis = viewer.dims.ndim - layer.ndim
    viewer.dims.set_point(axis, float(layer.data_to_world(pos)[0]))


def points_input(layer, t_now: int) -> tuple[np.ndarray, np.ndarray]:
    """A Points layer as (N, 3) t, y, x rows (2-D points sit on frame ``t_now``) and the N
    track ids (the ``track_id`` feature when present, else 0..N-1). Points sharing a
    track id are that track's keyframes (one per frame)."""
    data = np.asarray(layer.data, dtype=np.float64)
    if len(data) == 0:
        raise InputError(f"Points layer '{layer.name}' is empty: place points on a frame "
                         "(one point per track).")
    if data.shape[1] == 2:
        pts = np.column_stack([np.full(len(data), t_now, float), data])
    else:
        pts = data[:, -3:].copy()
        pts[:, 0] = np.round(pts[:, 0])
    return pts, track_ids(layer)


def track_ids(layer) -> np.ndarray:
    """The ``track_id`` feature of a Points layer as whole numbers (default 0..N-1)."""
    ids = np.arange(len(layer.data))
    feats = getattr(layer, "features", None)
    if feats is not None and "track_id" in feats.columns:
        try:
            ids = np.asarray(feats["track_id"]).astype(np.int64)
        except (TypeError, ValueError):
            raise InputError("the Points layer's 'track_id' feature must hold whole "
                             "numbers.") from None
    return ids


def tracks_layer_data(ids: np.ndarray, positions: np.ndarray,
                      visible: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Tracking results as layer data, one row per tracked (finite) point, ordered by
    track id then time; lost (NaN) points are left out.

    ids (N,), positions (T, N, 2) y, x pixels (NaN: lost or not computed), visible (T, N)
    bool. Returns (tracks (M, 4) segment, t, y, x: a track's frames in a row, a new
    segment after each gap, so that no tail is drawn across it; points (M, 3) t, y, x;
    features {"track_id": (M,) int, "visible": (M,) bool}).
    """
    t_total, n = visible.shape
    tt, ii = np.meshgrid(np.arange(t_total), np.arange(n), indexing="ij")
    ok = np.isfinite(positions[..., 0])
    order = np.lexsort((tt[ok], ids[ii[ok]]))          # by track id, then time
    tid = ids[ii[ok]][order]
    t = tt[ok][order]
    yx = positions[ok][order]
    new = np.ones(len(t), bool)
    new[1:] = (tid[1:] != tid[:-1]) | (t[1:] != t[:-1] + 1)
    segment = np.cumsum(new) - 1
    tracks = np.column_stack([segment, t, yx]).astype(np.float64)
    points = np.column_stack([t, yx])
    features = {"track_id": tid.astype(int), "visible": visible[ok][order].astype(bool)}
    return tracks, points, features
