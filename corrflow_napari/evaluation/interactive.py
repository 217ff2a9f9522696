"""A robot user correcting propagated masks, scored after every round (in the spirit of
the DAVIS interactive benchmark).

Round 0 propagates the first frame's ground-truth mask. Each later round the robot picks
one scored frame that is not a keyframe yet - the one with the lowest J (``pick="gt"``)
or the least confident one (``pick="confidence"``, as a user guided by the widget
would) - gives
its ground-truth mask as a new keyframe and re-propagates as the widget does: one
:class:`~corrflow_napari.feature_cache.FeatureCache` per sequence, only the frames
:func:`~corrflow_napari.propagation.affected_range` names. Every round records J, F, J&F
(official protocol: first and last frames not scored), the seconds the propagation took,
and the Spearman rank correlation of each confidence measure with the true per-frame J.

Several robots (pick x fusion) on one sequence share its encoder outputs and round 0 (one
keyframe: every fusion gives the same result), so features are computed once; each robot
starts without the other robots' cached chains, so its seconds are what a user would wait.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError
from ..propagation import FUSIONS, PropagationSettings
from .davis_data import frame_folder, load_annotations
from .results import write_results

PICKS = ("gt", "confidence")


@dataclass(frozen=True)
class Robot:
    """How a robot picks its corrections (``pick``: gt | confidence) and the fusion of
    the propagation it re-runs (a :data:`~corrflow_napari.propagation.FUSIONS` name)."""

    pick: str = "gt"
    fusion: str = "distance"

    def __post_init__(self):
        if self.pick not in PICKS:
            raise InputError(f"--pick {self.pick!r} is not one of {', '.join(PICKS)}.")
        if self.fusion not in FUSIONS:
            raise InputError(f"--fusion {self.fusion!r} is not one of {', '.join(FUSIONS)}.")

    @property
    def name(self) -> str:
        return f"{self.pick}/{self.fusion}"


def robots_from(picks: str, fusions: str) -> list[Robot]:
    """Every combination of comma lists of picks and fusions (e.g. "gt,confidence")."""
    def split(spec: str) -> list[str]:
        return [s.strip() for s in spec.split(",") if s.strip()]
    robots = [Robot(p, f) for f in split(fusions) for p in split(picks)]
    if not robots:
        raise InputError("no robot to run; give --pick and --fusion values.")
    return robots


def per_frame_j(gt: np.ndarray, pred: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """(T,) region J of every frame, mean over the objects ``ids`` (an object absent from
    both masks scores 1)."""
    out = np.empty(len(gt))
    for t in range(len(gt)):
        vals = []
        for i in ids:
            g, p = gt[t] == i, pred[t] == i
            union = np.count_nonzero(g | p)
            vals.append(1.0 if union == 0 else np.count_nonzero(g & p) / union)
        out[t] = np.mean(vals)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of the finite pairs (NaN when fewer than 3 or constant)."""
    from scipy.stats import spearmanr
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def pick_frame(pick: str, keyframes, j: np.ndarray, confidence: np.ndarray) -> int | None:
    """The frame to correct next: lowest J (``"gt"``) or lowest confidence among the
    scored frames (1 .. T-2: the protocol scores neither the first nor the last) that are
    not keyframes; None when there is none."""
    score = (j if pick == "gt" else confidence).astype(float).copy()
    score[list(keyframes)] = np.nan
    score[[0, -1]] = np.nan
    if np.all(np.isnan(score)):
        return None
    return int(np.nanargmin(score))


class _State:
    """One robot's current labels, confidences and keyframes."""

    def __init__(self, first, gt: np.ndarray, ids):
        self.labels = first.labels.copy()
        self.confidence = first.confidence.copy()
        self.measures = {k: v.copy() for k, v in first.measures.items()}
        self.keyframes = {0: gt[0]}
        self.j = per_frame_j(gt, self.labels, ids)

    def merge(self, res, start: int, stop: int, gt: np.ndarray, ids) -> None:
        sl = slice(start, stop)
        self.labels[sl] = res.labels[sl]
        self.confidence[sl] = res.confidence[sl]
        for k, v in res.measures.items():
            self.measures[k][sl] = v[sl]
        self.j[sl] = per_frame_j(gt[sl], self.labels[sl], ids)


def _round_row(r: int, key, seconds: float, n_frames: int, gt, state: _State, ids) -> dict:
    from ..metrics import evaluate_sequence
    score = evaluate_sequence(gt, state.labels)
    free = np.ones(len(gt), bool)
    free[list(state.keyframes)] = False
    return {"round": r, "keyframe": key, "J": score["J"], "F": score["F"], "JF": score["JF"],
            "seconds": seconds, "frames_propagated": n_frames,
            "spearman": {m: spearman(v[free], state.j[free])
                         for m, v in state.measures.items()}}


def run_robots(model, frames, gt: np.ndarray, robots: Sequence[Robot], rounds: int, *,
               settings: PropagationSettings | None = None, cache=None, video_key="video",
               log: Callable[[str], None] | None = None) -> dict[str, list[dict]]:
    """Run ``robots`` on one video with ground truth ``gt`` (T, H, W); returns
    {robot name: [one row per round: round, keyframe, J, F, JF, seconds,
    frames_propagated, spearman {measure: rho}]}. Round 0 is shared (see module doc)."""
    from ..feature_cache import FeatureCache
    from ..propagation import affected_range, propagate
    settings = settings or PropagationSettings()
    cache = cache if cache is not None else FeatureCache()
    ids = [int(i) for i in np.unique(gt[0]) if i != 0]
    t0 = time.perf_counter()
    first = propagate(model, frames, {0: gt[0]}, settings=settings, cache=cache,
                      video_key=video_key)
    first_seconds = time.perf_counter() - t0
    first_chains = cache.values_of(video_key)
    out: dict[str, list[dict]] = {}
    for robot in robots:
        cache.drop(video_key, features=False)    # a robot's chains are its own (timing),
        for key, value in first_chains.items():  # from its own round 0 on
            cache.put(key, value)
        rs = dataclasses.replace(settings, fusion=robot.fusion)
        state = _State(first, gt, ids)
        rows = [_round_row(0, 0, first_seconds, len(gt) - 1, gt, state, ids)]
        for r in range(1, rounds + 1):
            k = pick_frame(robot.pick, state.keyframes, state.j, state.confidence)
            if k is None:
                break
            state.keyframes[k] = gt[k]
            start, stop = affected_range(state.keyframes, k, len(gt), rs)
            t0 = time.perf_counter()
            res = propagate(model, frames, state.keyframes, settings=rs, start=start,
                            stop=stop, cache=cache, video_key=video_key)
            seconds = time.perf_counter() - t0
            state.merge(res, start, stop, gt, ids)
            n = sum(t not in state.keyframes for t in range(start, stop))
            rows.append(_round_row(r, k, seconds, n, gt, state, ids))
        out[robot.name] = rows
        if log:
            log(f"  {robot.name}: J&F " + " -> ".join(f"{100 * x['JF']:.1f}" for x in rows)
                + "  (s: " + ", ".join(f"{x['seconds']:.1f}" for x in rows) + ")")
    return out


def evaluate_interactive_sequence(root, seq: str, robots: Sequence[Robot], rounds: int,
                                  features: str = "corrflow", weights=None,
                                  device: str = "auto", settings=None,
                                  threads: int | None = None, log=None) -> dict:
    """Load one DAVIS sequence and :func:`run_robots` on it (a fresh feature cache)."""
    import torch

    from ..io import open_video
    from ..model import load_model
    if threads:
        torch.set_num_threads(threads)
    gt, _ = load_annotations(root, seq)
    frames = open_video(frame_folder(root, seq))
    if len(frames) != len(gt):
        raise InputError(f"{seq}: {len(frames)} frames but {len(gt)} annotations.")
    model = load_model("lab" if features == "lab" else weights, device=device)
    return {"n_frames": len(gt),
            "robots": run_robots(model, frames, gt, robots, rounds, settings=settings,
                                 video_key=seq, log=log)}


def _worker(kwargs: dict) -> tuple[str, dict]:
    return kwargs["seq"], evaluate_interactive_sequence(**kwargs)


def summarise_rounds(results: dict[str, dict]) -> dict[str, dict]:
    """{robot: {"JF", "J", "F", "seconds": [mean over sequences per round]}} (sequences
    that stopped early, every frame a keyframe, are left out of the later rounds)."""
    names = list(next(iter(results.values()))["robots"])
    out = {}
    for name in names:
        per_seq = [r["robots"][name] for r in results.values()]
        n = max(len(rows) for rows in per_seq)
        out[name] = {key: [float(np.mean([rows[i][key] for rows in per_seq if len(rows) > i]))
                           for i in range(n)] for key in ("JF", "J", "F", "seconds")}
    return out


def format_rounds_table(summary: dict[str, dict]) -> str:
    """Mean J&F (percent) after each round, and mean seconds per round, one row per robot."""
    n = max(len(s["JF"]) for s in summary.values())
    width = max(len("robot"), *(len(k) for k in summary))
    head = f"{'robot':<{width}}" + "".join(f"{'round ' + str(i):>9}" for i in range(n))
    lines = [head + "   seconds/round", "-" * (len(head) + 16)]
    for name, s in summary.items():
        lines.append(f"{name:<{width}}" + "".join(f"{100 * v:>9.1f}" for v in s["JF"])
                     + "   " + " ".join(f"{v:.1f}" for v in s["seconds"]))
    return "\n".join(lines)


def evaluate_interactive(root, sequences: list[str], robots: Sequence[Robot], rounds: int = 3,
                         features: str = "corrflow", weights=None, device: str = "auto",
                         settings: PropagationSettings | None = None, out_dir=None,
                         jobs: int = 1, log: Callable[[str], None] = print) -> dict:
    """What ``corrflow eval-interactive`` does: every robot on every sequence (``jobs``
    sequences in parallel processes, the CPU threads split between them). Writes
    ``out_dir/results.json``. Returns {"sequences": {seq: ...}, "mean": summary}."""
    if rounds < 0:
        raise InputError(f"--rounds must be >= 0, got {rounds}.")
    settings = settings or PropagationSettings()
    common = dict(root=str(root), robots=list(robots), rounds=rounds, features=features,
                  weights=weights, device=device, settings=settings)
    results: dict[str, dict] = {}
    if jobs <= 1:
        for seq in sequences:
            log(f"{seq}:")
            results[seq] = evaluate_interactive_sequence(seq=seq, log=log, **common)
    else:
        import multiprocessing as mp
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            for seq, res in pool.map(_worker, [dict(seq=s, threads=threads, **common)
                                               for s in sequences]):
                results[seq] = res
                log(f"{seq}: " + ", ".join(f"{n} {100 * rows[-1]['JF']:.1f}"
                                           for n, rows in res["robots"].items()))
    results = {s: results[s] for s in sequences}
    summary = summarise_rounds(results)
    if out_dir is not None:
        write_results(out_dir, {"features": features,
                                "weights": str(weights) if weights else None,
                                "settings": asdict(settings), "rounds": rounds,
                                "robots": [r.name for r in robots], "mean": summary,
                                "sequences": results})
    return {"sequences": results, "mean": summary}
