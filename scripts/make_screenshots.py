"""Regenerate the README screenshots from a real, shown napari viewer.

    xvfb-run -a -s "-screen 0 1920x1080x24" python scripts/make_screenshots.py

(a hidden viewer screenshots black, so the window must be shown; on a desktop just run
``python scripts/make_screenshots.py``). The viewer is the demo's (the sample, its
painted first frame, the three docks, the window on the whole screen). Writes
docs/screenshots/:

* 02_propagating_progress.png  "Propagate" half-way, Follow on: the dock's "frame k/47,
                               s/frame, s left", napari's progress bar, the frame filling in
* 03_confidence_least_confident.png  after the run: the per-frame confidence strip and
                               "Go to least confident" pressed (the frame it picked)
* 04_tracks_confidence.png     "Track points": confident points green, low-confidence red,
                               lost points hidden, tails per track
* 05_finetune_*.png            with --finetune-steps N: the Fine-tune dock after N steps

It also prints the seconds of the first run and of the re-run after a correction on the
least confident frame ("Re-propagate from here", the features kept between runs), as a
user sees them in the dock.

``make demo``'s own view (the result loaded on frame 0) is taken by the demo itself:
``python -m corrflow_napari.demo --out OUT --screenshot docs/screenshots/00_demo_frame0.png``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: points placed on frame 0 of the sample (t, y, x): on the bunny, its shadow, the grass,
#: the rocks and the sky
TRACK_POINTS = [(0, 52, 150), (0, 80, 140), (0, 105, 152), (0, 140, 160), (0, 60, 95),
                (0, 150, 60), (0, 110, 270), (0, 30, 285), (0, 165, 230), (0, 120, 40)]


def pump(app, seconds: float = 0.3) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        app.processEvents()
        time.sleep(0.01)


def wait(app, cond, timeout: float, what: str) -> None:
    t0 = time.perf_counter()
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{what} did not finish in {timeout:.0f} s")
    pump(app)


def run_timed(app, widget, start, what: str) -> float:
    t0 = time.perf_counter()
    start()
    wait(app, lambda: not widget.running, 1800, what)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--finetune-steps", type=int, default=0,
                    help="also run the Fine-tune dock for this many steps and shoot it")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from qtpy.QtWidgets import QApplication

    from corrflow_napari.demo import SETTLE_S, open_viewer, save_window
    from corrflow_napari.widgets.layer_arrays import current_frame

    viewer, docks = open_viewer(show=True)
    app = QApplication.instance()
    pump(app, SETTLE_S + 0.5)
    labels = viewer.layers["bunny labels"]
    prop, _ = docks["propagate"]

    # 1. propagating, half-way, following the frames
    prop.follow.setChecked(True)
    half = labels.data.shape[0] // 2
    viewer.window._status_bar._toggle_activity_dock(True)     # napari's progress bars

    def shoot_half_way(t):
        if t == half:
            prop.frame_written.disconnect(shoot_half_way)
            save_window(viewer, out / "02_propagating_progress.png")

    prop.frame_written.connect(shoot_half_way)
    first = run_timed(app, prop, prop.propagate, "propagation")
    viewer.window._status_bar._toggle_activity_dock(False)
    print(f"first run: {first:.1f} s ({prop.progress.text()}); {prop.status.text()}")

    # 2. the confidence strip and the least confident frame
    worst = prop.go_to_least_confident()
    pump(app)
    save_window(viewer, out / "03_confidence_least_confident.png")
    viewer.dims.set_current_step(0, worst)
    rerun = run_timed(app, prop, prop.repropagate_from_current, "re-propagation")
    job = prop.last_job
    print(f"re-run after a correction on frame {worst} (frames {job.start}..{job.stop - 1}): "
          f"{rerun:.1f} s = {rerun / first:.2f} x the first run ({prop.progress.text()})")

    # 3. tracks coloured by confidence
    track, track_dock = docks["track"]
    track_dock.raise_()
    pts = viewer.add_points(np.array(TRACK_POINTS, float), name="points",
                            features={"track_id": np.arange(len(TRACK_POINTS))}, size=6)
    track.points_combo.set_layer(pts)
    seconds = run_timed(app, track, track.track, "tracking")
    ids, pos, vis = track.result
    print(f"tracking: {seconds:.1f} s; {track.status.text()}")
    shown = np.isfinite(pos[..., 0])
    mixed = [t for t in range(pos.shape[0]) if (vis[t] & shown[t]).any()
             and (~vis[t] & shown[t]).any()]
    t_show = max(mixed, key=lambda t: int((~vis[t] & shown[t]).sum())) if mixed else \
        pos.shape[0] - 1
    viewer.layers.selection.active = track.points_out_layer
    viewer.dims.set_current_step(0, t_show)
    pump(app)
    print(f"tracks shown on frame {current_frame(viewer, labels)}: "
          f"{int((vis[t_show] & shown[t_show]).sum())} green, "
          f"{int((~vis[t_show] & shown[t_show]).sum())} red, {int((~shown[t_show]).sum())} lost")
    save_window(viewer, out / "04_tracks_confidence.png")

    # 4. optional: fine-tuning
    if args.finetune_steps > 0:
        ft, ft_dock = docks["finetune"]        # default recipe: the painted frame's labels
        ft_dock.raise_()
        ft.set_budget(steps=args.finetune_steps)
        ft.set_output(Path(tempfile.mkdtemp(prefix="corrflow_screens_")) / "finetuned.pt")
        seconds = run_timed(app, ft, ft.start, "fine-tuning")
        print(f"fine-tuning: {seconds:.1f} s; {ft.status.text()}")
        save_window(viewer, out / "05_finetune_loss_curve.png")
        ft.grab().toImage().save(str(out / "05_finetune_widget.png"))
        print(f"wrote {out / '05_finetune_widget.png'}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
