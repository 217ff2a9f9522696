#!/usr/bin/env python
"""The correction loop on a real 720p phone clip, as a user runs it: a first propagation
of three painted objects, then "Re-propagate from here" on the least confident frame
(its own labels as the correction), in the Propagate dock of a shown napari viewer
(Qt's own event loop), and the same two calls on the engine alone.

    xvfb-run -a -s "-screen 0 1920x1080x24" python benchmarks/bench_dock_clip.py
    python benchmarks/bench_dock_clip.py --engine-only --frames 100

The clip is ``../shared/data/clips/02_cups.mp4`` (300 frames, 1280x720, from the SAM 2
demo gallery); on frame 0 the yellow ball (1), the middle cup (2) and the lifted cup (3)
are painted (polygons, the same mask in both). Prints the seconds
of each run and the ratio re-run / first run, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CLIP = REPO.parent / "shared" / "data" / "clips" / "02_cups.mp4"
#: (id, polygon (y, x) on frame 0) of the painted objects
OBJECTS = [(1, [(463 + 34 * np.sin(a), 400 + 34 * np.cos(a))
                for a in np.linspace(0, 2 * np.pi, 24, endpoint=False)]),
           (2, [(298, 604), (298, 708), (535, 735), (535, 572)]),
           (3, [(0, 262), (0, 392), (170, 440), (190, 268)])]


def painted(h: int, w: int) -> np.ndarray:
    """(H, W) uint8 ids: the three objects of frame 0 (scaled from 720 lines to ``h``: the
    same clip re-encoded at another size, e.g. 4K)."""
    from skimage.draw import polygon
    mask = np.zeros((h, w), np.uint8)
    for oid, poly in OBJECTS:
        rr, cc = polygon(*(np.array(poly).T * h / 720), (h, w))
        mask[rr, cc] = oid
    return mask


def engine(video, frames: int) -> dict:
    """First run and re-run from the least confident frame with the engine alone."""
    from corrflow_napari.feature_cache import FeatureCache
    from corrflow_napari.model import load_model
    from corrflow_napari.propagation import affected_range, propagate

    mask = painted(*video.shape[1:3])
    model, cache = load_model(None, device="cpu"), FeatureCache()
    t0 = time.perf_counter()
    res = propagate(model, video, {0: mask}, cache=cache, video_key="clip", stop=frames)
    first = time.perf_counter() - t0
    conf = np.where(np.arange(len(res.confidence)) < frames, res.confidence, np.nan)
    k = int(np.nanargmin(conf[1:])) + 1
    keys = {0: mask, k: res.labels[k]}
    start, stop = affected_range(keys, k, len(video))
    t0 = time.perf_counter()
    propagate(model, video, keys, cache=cache, video_key="clip", start=start,
              stop=min(stop, frames))
    return {"first_s": first, "rerun_s": time.perf_counter() - t0, "k": k,
            "cache_mib": cache.nbytes / 2 ** 20}


def dock(clip: Path, frames: int) -> dict:
    """The same in the Propagate dock of a shown viewer, Qt's event loop running."""
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    image = viewer.open(clip, plugin="corrflow-napari")[0]
    t, h, w = image.data.shape[:3]
    labels = viewer.add_labels(np.zeros((t, h, w), np.uint8), name="cups")
    viewer.dims.set_current_step(0, 0)
    labels.data[0] = painted(h, w)
    labels.refresh()
    _, widget = viewer.window.add_plugin_dock_widget("corrflow-napari", "Propagate labels")
    widget.frame_range.end_spin.setValue(frames - 1)
    out: dict = {}

    def step(name, start):
        out[name + "_t0"] = time.perf_counter()
        start()

    def finished(status):
        if "rerun_t0" in out:
            out["rerun_s"] = time.perf_counter() - out.pop("rerun_t0")
            app.quit()
            return
        out["first_s"] = time.perf_counter() - out.pop("first_t0")
        out["k"] = widget.go_to_least_confident()
        QTimer.singleShot(0, lambda: step("rerun", widget.repropagate_from_current))

    widget.run_finished.connect(finished)
    QTimer.singleShot(2000, lambda: step("first", widget.propagate))
    app.exec() if hasattr(app, "exec") else app.exec_()    # quitting closes the viewer
    return out


def report(name: str, r: dict, frames: int) -> None:
    print(f"{name}: first run {r['first_s']:.1f} s ({frames - 1} frames), re-run from frame "
          f"{r['k']} {r['rerun_s']:.1f} s = {r['rerun_s'] / r['first_s']:.2f}x", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", default=str(CLIP))
    ap.add_argument("--frames", type=int, default=300, help="first N frames (default all)")
    ap.add_argument("--engine-only", action="store_true", help="skip the napari dock")
    args = ap.parse_args(argv)
    from corrflow_napari.io import open_video
    video = open_video(args.clip)
    frames = min(args.frames, len(video))
    rows = {"engine": engine(video, frames)}
    report("engine", rows["engine"], frames)
    if not args.engine_only:
        rows["dock"] = dock(Path(args.clip), frames)
        report("dock", rows["dock"], frames)
    print(json.dumps({"benchmark": "dock_clip", "clip": Path(args.clip).name,
                      "frames": frames, **{f"{n}_{k}": round(v, 2) for n, r in rows.items()
                                           for k, v in r.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
