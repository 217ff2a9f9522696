"""BADJA keypoint evaluation: track the joints of the first annotated frame and score them.

Protocol (as BADJA scores): the joints visible on the first annotated frame are tracked
with :func:`~corrflow_napari.tracking.track_points` from that frame to the end of the
video (earlier frames are not used). On every later annotated frame, a joint visible
there (and on the first frame) is correct when its error <= alpha x sqrt(area of the
object's ground-truth mask on that frame), alpha = 0.1 and 0.2; PCK pools all scored
joints of the sequence. Distances are measured in the annotation's 1920x1080 pixels,
the mask area (480p DAVIS annotation, non-zero = object) converted to those pixels.
The "static" floor leaves every point where it was given. The annotation format is
described in :mod:`.badja_data`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.frame_subset import FrameSubset
from .badja_data import (
    ALPHAS,
    NATIVE_HW,
    BadjaSequence,
    first_frames,
    load_badja,
    resolve_badja_sequences,
    to_frame_pixels,
    to_native_pixels,
)
from .davis_data import find_sequence_root, frame_folder, read_frame_annotation, split_roots
from .results import format_badja_table, summarise_badja, write_results


def score_badja(pred: np.ndarray, seq: BadjaSequence, areas: np.ndarray,
                hw: tuple[int, int], alphas: Sequence[float] = ALPHAS,
                pred_visible: np.ndarray | None = None) -> dict:
    """PCK of predicted joints on the annotated frames.

    pred: (K, J, 2) (y, x) on frames of size ``hw`` for every annotated frame of ``seq``
    (row 0, the given frame, is not scored; untracked joints may be NaN).
    areas: (K,) object-mask areas in pixels of the ``hw`` frames.
    pred_visible: optional (K, J) predicted visibility; adds "visibility_accuracy": the
    fraction of (later frame, tracked joint) pairs where it agrees with the annotation.
    Returns {"pck@0.1": fraction, ..., "n_joints": joints scored, "n_frames": frames
    scored, "per_frame": [{frame, n, pck@...}]}; PCK is NaN when nothing is scored.
    """
    from ..metrics import pck

    pred = np.asarray(pred, float)
    k, j = seq.joints.shape[:2]
    if pred.shape != (k, j, 2):
        raise ValueError(f"pred must be {(k, j, 2)}, got {pred.shape}")
    areas = np.asarray(areas, float)
    if areas.shape != (k,):
        raise ValueError(f"areas must be ({k},), got {areas.shape}")
    visible = seq.visible & seq.visible[:1]           # tracked and visible where scored
    visible[0] = False                                # the given frame is not scored
    pred_native = to_native_pixels(np.nan_to_num(pred, nan=-1e9), hw)
    thr = np.sqrt(areas * (NATIVE_HW[0] / hw[0]) * (NATIVE_HW[1] / hw[1]))
    thr = np.where(areas > 0, thr, -1.0)[:, None]      # no object: no joint can be right
    out: dict = {"n_joints": int(visible.sum()), "n_frames": int(visible[1:].any(1).sum())}
    for a in alphas:
        out[f"pck@{a:g}"] = pck(pred_native, seq.joints, visible, thr, a)
    per_frame = []
    for i in range(1, k):
        if visible[i].any():
            row = {"frame": int(seq.frames[i]), "n": int(visible[i].sum())}
            for a in alphas:
                row[f"pck@{a:g}"] = pck(pred_native[i], seq.joints[i], visible[i], thr[i], a)
            per_frame.append(row)
    out["per_frame"] = per_frame
    if pred_visible is not None:
        tracked = np.broadcast_to(seq.visible[:1], seq.visible.shape)[1:]
        agree = (np.asarray(pred_visible, bool)[1:] == seq.visible[1:])[tracked]
        out["visibility_accuracy"] = float(agree.mean()) if agree.size else float("nan")
    return out


def evaluate_badja_sequence(model, davis_root, badja_json, *, settings=None,
                            static: bool = False, use_mask: bool = False,
                            max_frames: int | None = None,
                            progress: Callable[[int, int], None] | None = None) -> dict:
    """Track one sequence's first-frame joints and score them (see the module doc).

    model: a feature extractor (ignored when ``static``).
    settings: the tracker's :class:`~corrflow_napari.tracking.TrackSettings`.
    davis_root: a DAVIS folder, or several (list / ','-joined): the first holding the
    sequence is used.
    use_mask: give the tracker the ground-truth object mask of the first annotated frame
    (the "user painted the animal" case); later masks are only used for scoring.
    max_frames: track only this many frames from the first annotated one (quick runs).
    Returns the :func:`score_badja` dict plus "tracks" (dict of arrays: "frames" absolute
    frame numbers, "positions" (T, N, 2), "visible" (T, N), "joint_ids" (N,)),
    "start", "seconds", "s_per_frame".
    """
    from ..io import open_video
    from ..tracking import track_points

    seq = load_badja(badja_json)
    root = find_sequence_root(split_roots(davis_root), seq.name)
    video = open_video(frame_folder(root, seq.name))
    t_video, h, w = len(video), int(video.shape[1]), int(video.shape[2])
    start = int(seq.frames[0])
    stop = t_video if max_frames is None else min(t_video, start + max(1, int(max_frames)))
    if start >= t_video:
        raise InputError(f"{seq.name}: first annotated frame {start} but the video has "
                         f"{t_video} frames.")
    seq = first_frames(seq, stop)
    ids = np.flatnonzero(seq.visible[0])
    if len(ids) == 0:
        raise InputError(f"{seq.name}: no joint is visible on the first annotated frame.")
    first = to_frame_pixels(seq.joints[0, ids], (h, w))
    first[:, 0] = first[:, 0].clip(0, h - 1)
    first[:, 1] = first[:, 1].clip(0, w - 1)
    frames = FrameSubset(video, range(start, stop))
    t0 = time.perf_counter()
    if static:
        positions = np.repeat(first[None], len(frames), axis=0)
        visible = np.ones(positions.shape[:2], bool)
    else:
        pts = np.concatenate([np.zeros((len(ids), 1)), first], axis=1)
        masks = {0: read_frame_annotation(root, seq.name, start) != 0} if use_mask else None
        tracks = track_points(model, frames, pts, progress=progress, settings=settings,
                              object_masks=masks)
        positions, visible = tracks.positions, tracks.visible
    seconds = time.perf_counter() - t0
    areas = []
    for f in seq.frames:
        mask = read_frame_annotation(root, seq.name, int(f))
        if mask.shape != (h, w):
            raise InputError(f"{seq.name}: mask of frame {f} is {mask.shape}, frames are "
                             f"{(h, w)}.")
        areas.append(int(np.count_nonzero(mask)))
    pred = np.full(seq.joints.shape, np.nan)
    pred[:, ids] = positions[seq.frames - start]
    pred_vis = np.zeros(seq.visible.shape, bool)
    pred_vis[:, ids] = visible[seq.frames - start]
    result = score_badja(pred, seq, np.array(areas), (h, w), pred_visible=pred_vis)
    result.update(start=start, n_tracked=int(len(ids)), seconds=seconds,
                  s_per_frame=seconds / max(1, len(frames) - 1), root=str(root),
                  tracks={"frames": np.arange(start, stop), "positions": positions,
                          "visible": visible, "joint_ids": ids})
    return result


def write_badja_tracks_csv(path, result: dict) -> None:
    """``joint,t,y,x,visible`` rows (t = frame number in the video, joint = BADJA index)."""
    from ..io import write_tracks_csv
    tr = result["tracks"]
    write_tracks_csv(path, [int(j) for j in tr["joint_ids"]], tr["positions"], tr["visible"],
                     frames=tr["frames"], id_column="joint")


def evaluate_badja(davis_roots, badja_dir, sequences: Sequence[str], *, model=None,
                   static: bool = False, settings=None, use_mask: bool = False,
                   max_frames: int | None = None, tracks_dir=None,
                   log: Callable[[str], None] = print) -> dict[str, dict]:
    """Evaluate ``sequences`` (tracker, or the static floor); writes
    ``tracks_dir/<seq>_tracks.csv`` when given. Returns {seq: result} (tracks dropped)."""
    roots = split_roots(davis_roots)
    results: dict[str, dict] = {}
    for name in sequences:
        res = evaluate_badja_sequence(model, roots, Path(badja_dir) / f"{name}.json",
                                      settings=settings, static=static, use_mask=use_mask,
                                      max_frames=max_frames)
        if tracks_dir is not None:
            write_badja_tracks_csv(Path(tracks_dir) / f"{name}_tracks.csv", res)
        res.pop("tracks")
        results[name] = res
        log(f"{'static' if static else 'tracked'} {name}: PCK@0.1 {100 * res['pck@0.1']:.1f}  "
            f"PCK@0.2 {100 * res['pck@0.2']:.1f}  ({res['n_joints']} joints on "
            f"{res['n_frames']} frames" + ("" if static else f", {res['s_per_frame']:.2f} s/frame")
            + ")")
    return results


def run_eval_badja(davis_roots, badja_dir, sequences: str = "all", *, model=None,
                   method: str = "tracker", static_only: bool = False, settings=None,
                   use_mask: bool = False, max_frames: int | None = None, out_dir=None,
                   log: Callable[[str], None] = print) -> tuple[dict, str]:
    """What ``corrflow eval-badja`` does: the static floor and (unless ``static_only``)
    the tracker ``model`` on ``sequences`` ("all" or a comma list). Writes
    ``out_dir/results.json`` and ``out_dir/<seq>_tracks.csv`` (the tracker's, or the
    static points' with ``static_only``). Returns ({method: {seq: result}}, table)."""
    from ..tracking import TrackSettings
    settings = settings or TrackSettings()
    roots = split_roots(davis_roots)
    names = resolve_badja_sequences(badja_dir, sequences)
    if sequences.strip().lower() == "all":                 # those whose frames are here
        found = [n for n in names if any(frame_folder(r, n).is_dir() for r in roots)]
        if not found:
            raise InputError(f"none of the BADJA sequences ({', '.join(names)}) has frames in "
                             f"{', '.join(map(str, roots))}; give the DAVIS folder(s) holding "
                             "them.")
        if len(found) < len(names):
            log(f"skipping {', '.join(n for n in names if n not in found)}: no frames in the "
                "given DAVIS folder(s)")
        names = found
    for name in names:                                     # fail before any long run
        find_sequence_root(roots, name)
    columns: dict[str, dict] = {}
    common = dict(max_frames=max_frames, log=log)
    columns["static"] = evaluate_badja(roots, badja_dir, names, static=True,
                                       tracks_dir=out_dir if static_only else None, **common)
    if not static_only:
        if model is None:
            raise InputError("no model given for tracking; pass one, or evaluate the static "
                             "floor only.")
        columns[method] = evaluate_badja(roots, badja_dir, names, model=model,
                                         settings=settings, use_mask=use_mask,
                                         tracks_dir=out_dir, **common)
    if out_dir is not None:
        payload = {"sequences": names, "davis_roots": [str(r) for r in roots],
                   "max_frames": max_frames, "use_mask": use_mask,
                   "settings": asdict(settings),
                   "methods": {m: {"mean": summarise_badja(res), "sequences": res}
                               for m, res in columns.items()}}
        write_results(out_dir, payload)
    return columns, format_badja_table(columns)
