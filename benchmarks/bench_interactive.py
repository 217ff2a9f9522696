#!/usr/bin/env python
"""Interactive re-run benchmark (issue 15): the time of a re-propagation after one
correction in the middle of a video, against the first run's time, in one process.

    python benchmarks/bench_interactive.py                      # shipped weights, cows
    python benchmarks/bench_interactive.py --features lab --frames 40
    python benchmarks/bench_interactive.py --no-cache           # also time the old way
    python benchmarks/bench_interactive.py --settle 0           # new chains run to the end

What it does, as the Propagate widget and ``corrflow eval-interactive`` do:
1. first run: propagate frame 0's mask through the first ``--frames`` frames with a fresh
   :class:`~corrflow_napari.feature_cache.FeatureCache` (every frame encoded);
2. correction: the ground-truth mask of the middle frame k becomes a keyframe, and only
   :func:`~corrflow_napari.propagation.affected_range` is re-propagated with the same
   cache (features and unchanged chains reused; the new chains from k run the attention);
3. with ``--no-cache``: the same re-run without a cache (every frame encoded again: the
   behaviour before the cache), for reference.
A 2-frame warm-up run (its own cache) comes first, untimed. Prints the seconds of each,
the ratio re-run / first run (target <= 0.3) and, as its last line, one JSON object.
Without the DAVIS folder the bundled sample clip is used (the "correction" is then the
first run's own mask of frame k: the timing is the same).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

DEFAULT_DAVIS = REPO.parent / "shared" / "data" / "davis2016-dev"
TARGET = 0.3


def load_clip(davis: Path, seq: str, frames: int | None):
    """(frames (T,H,W,3) uint8, ground truth (T,H,W) or None, name)."""
    if (davis / "JPEGImages" / "480p" / seq).is_dir():
        from corrflow_napari.evaluation import load_sequence_prefix
        video, gt = load_sequence_prefix(davis, seq, frames)
        return video, gt, f"DAVIS {seq}"
    from corrflow_napari.sample_data import load_sample
    video, mask = load_sample()
    video = video[:frames] if frames else video
    return video, {0: mask}, "bundled sample clip"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--davis", default=str(DEFAULT_DAVIS), help="DAVIS-2016 root")
    ap.add_argument("--seq", default="cows", help="sequence (default: cows, 104 frames)")
    ap.add_argument("--frames", type=int, default=None, help="first N frames only")
    ap.add_argument("--features", choices=["corrflow", "lab"], default="corrflow",
                    help="corrflow: the shipped weights (default); lab: Lab colour")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--fusion", default=None, help="PropagationSettings.fusion (default: its own)")
    ap.add_argument("--radius", type=int, default=None,
                    help="PropagationSettings.radius (default: its own)")
    ap.add_argument("--min-mass", type=float, default=None,
                    help="PropagationSettings.min_mass (default: its own; 0: no tile skipped)")
    ap.add_argument("--settle", type=float, default=None,
                    help="PropagationSettings.settle (default: its own; 0: recompute all)")
    ap.add_argument("--no-cache", action="store_true", help="also time a re-run without cache")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from corrflow_napari.feature_cache import FeatureCache
    from corrflow_napari.model import load_model
    from corrflow_napari.propagation import PropagationSettings, affected_range, propagate

    given = {"fusion": args.fusion, "radius": args.radius, "min_mass": args.min_mass,
             "settle": args.settle}
    settings = PropagationSettings(**{k: v for k, v in given.items() if v is not None})
    video, gt, name = load_clip(Path(args.davis), args.seq, args.frames)
    t_total, k = len(video), len(video) // 2
    model = load_model("lab" if args.features == "lab" else None, device=args.device)
    first_mask = gt[0]
    print(f"{name}: {t_total} frames {video.shape[2]}x{video.shape[1]}, {args.features} "
          f"features, fusion {settings.fusion}, radius {settings.radius}, min_mass "
          f"{settings.min_mass}, settle {settings.settle}, torch threads "
          f"{torch.get_num_threads()}, device {model.device}", flush=True)

    propagate(model, video[:2], {0: first_mask}, settings=settings)   # warm-up, not timed
    cache = FeatureCache()
    t0 = time.perf_counter()
    res = propagate(model, video, {0: first_mask}, settings=settings, cache=cache,
                    video_key=name)
    first = time.perf_counter() - t0
    print(f"first run (all {t_total - 1} frames, every frame encoded): {first:.1f} s "
          f"({first / (t_total - 1):.2f} s/frame); cache {cache.nbytes / 2**20:.0f} MiB",
          flush=True)

    correction = gt[k] if not isinstance(gt, dict) else res.labels[k]
    keys = {0: first_mask, k: correction}
    start, stop = affected_range(keys, k, t_total, settings)
    t0 = time.perf_counter()
    propagate(model, video, keys, settings=settings, start=start, stop=stop, cache=cache,
              video_key=name)
    rerun = time.perf_counter() - t0
    ratio = rerun / first
    print(f"re-run after a correction at frame {k} (frames {start}..{stop - 1}, cache): "
          f"{rerun:.1f} s = {ratio:.2f} x the first run (target <= {TARGET}: "
          f"{'met' if ratio <= TARGET else 'NOT met'})", flush=True)
    out = {"benchmark": "interactive_rerun", "clip": name, "frames": t_total,
           "features": args.features, "fusion": settings.fusion,
           "radius": settings.radius, "min_mass": settings.min_mass, "settle": settings.settle,
           "correction_frame": k,
           "first_run_s": round(first, 2), "rerun_s": round(rerun, 2),
           "rerun_ratio": round(ratio, 3), "target": TARGET,
           "threads": torch.get_num_threads(), "device": str(model.device),
           "machine": platform.processor() or platform.machine()}
    if args.no_cache:
        t0 = time.perf_counter()
        propagate(model, video, keys, settings=settings, start=start, stop=stop)
        plain = time.perf_counter() - t0
        print(f"the same re-run without a cache: {plain:.1f} s = {plain / first:.2f} x",
              flush=True)
        out["rerun_no_cache_s"] = round(plain, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
