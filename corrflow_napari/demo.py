"""``make demo``: propagate the bundled sample's first-frame mask and write the results;
then, when a display is available, open napari with the sample, that result loaded
(not recomputed) and the widgets docked, on frame 0.

    python -m corrflow_napari.demo --out out [--no-viewer] [--device auto]

Writes ``OUT/masks/00000.png ...`` (indexed PNGs, one per frame) and ``OUT/overlay.gif``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from .errors import InputError


def display_available() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_headless(out: Path, device: str = "auto", log=print) -> Path:
    """Propagate the sample's frame-0 mask through the clip; write masks + overlay."""
    from .cli import ProgressBar
    from .io import davis_palette, overlay_frames, write_indexed_png, write_video
    from .model import SHIPPED_WEIGHTS, load_model
    from .propagation import propagate_labels
    from .sample_data import ATTRIBUTION, load_sample, sample_fps

    frames, mask = load_sample()
    log(f"sample: {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]} - {ATTRIBUTION}")
    if Path(SHIPPED_WEIGHTS).exists():
        weights, what = None, f"the shipped CorrFlow weights ({SHIPPED_WEIGHTS.name})"
    else:
        weights, what = "lab", ("the Lab-colour baseline (no learning): the shipped weights "
                                "are not installed")
    model = load_model(weights, device=device)
    log(f"propagating with {what} on {model.device}")
    t0 = time.perf_counter()
    labels = propagate_labels(model, frames, {0: mask}, progress=ProgressBar("propagate"))
    log(f"propagated {len(frames) - 1} frames in {time.perf_counter() - t0:.1f} s")
    masks = out / "masks"
    masks.mkdir(parents=True, exist_ok=True)
    palette = davis_palette()
    for t, lab in enumerate(labels):
        write_indexed_png(masks / f"{t:05d}.png", lab, palette)
    write_video(out / "overlay.gif", overlay_frames(frames, labels, palette), fps=sample_fps())
    log(f"wrote {masks}/00000.png .. {len(labels) - 1:05d}.png and {out / 'overlay.gif'}")
    return out


def load_result(labels, masks: Path, keyframes=(0,)) -> int:
    """Fill the (T, H, W) Labels layer ``labels`` with the PNGs :func:`run_headless` wrote
    to ``masks`` (loaded, not recomputed); frames other than ``keyframes`` are marked as
    propagated, so the Propagate widget takes only the keyframes as painted. Returns the
    number of frames loaded."""
    from .io import read_mask
    from .widgets.labels_edit import mark_written
    t_total, h, w = labels.data.shape
    paths = [masks / f"{t:05d}.png" for t in range(t_total)]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise InputError(f"{masks} lacks {missing[0]} (and {len(missing) - 1} more): run "
                         "the demo without --no-viewer to compute the result first.")
    result = np.stack([read_mask(p, shape=(h, w))[0] for p in paths])
    labels.data[...] = result.astype(labels.data.dtype)
    mark_written(labels, [t for t in range(t_total) if t not in set(keyframes)])
    labels.refresh()
    return t_total


def fit_to_screen(viewer) -> tuple[int, int, int, int]:
    """Give the napari window the whole available screen; returns (x, y, w, h)."""
    from qtpy.QtWidgets import QApplication
    g = QApplication.primaryScreen().availableGeometry()
    viewer.window.set_geometry(g.x(), g.y(), g.width(), g.height())
    return g.x(), g.y(), g.width(), g.height()


def open_viewer(out: Path | None = None, show: bool = True):
    """napari with the sample loaded, the three widgets docked, on frame 0.

    ``out``: the folder :func:`run_headless` wrote; its masks fill the sample's Labels
    layer (the painted frame 0 and the propagated frames). The window takes the screen,
    the frame axis is labelled ``t`` and the view is reset once the docks are in place.
    Returns ``(viewer, {name: (widget, dock)})`` for "propagate", "track", "finetune".
    """
    import napari
    from qtpy.QtCore import QTimer

    from .widgets import FinetuneWidget, PropagateWidget, TrackWidget
    viewer = napari.Viewer(title="corrflow-napari demo", show=show)
    viewer.open_sample("corrflow-napari", "bigbuckbunny")
    labels = viewer.layers["bunny labels"]
    if out is not None:
        load_result(labels, Path(out) / "masks")
    viewer.dims.axis_labels = ("t", "y", "x")
    viewer.dims.set_current_step(0, 0)          # napari opens a stack on its middle frame
    docks = {}
    for key, cls, name in (("propagate", PropagateWidget, "Propagate labels"),
                           ("track", TrackWidget, "Track points"),
                           ("finetune", FinetuneWidget, "Fine-tune model")):
        w = cls(viewer)
        dock = viewer.window.add_dock_widget(w, name=name, area="right",
                                             tabify=key != "propagate")
        docks[key] = (w, dock)
    fit_to_screen(viewer)
    viewer.layers.selection.active = labels
    docks["propagate"][0].refresh_keyframes()
    QTimer.singleShot(0, docks["propagate"][1].raise_)   # after napari raised the last tab
    fit_while_laying_out(viewer)
    return viewer, docks


#: seconds the window, the docks and the canvas take to settle after opening
SETTLE_S = 3.0


def fit_while_laying_out(viewer, seconds: float = SETTLE_S) -> None:
    """Fit the frame to the canvas now and at every canvas resize of the next ``seconds``:
    the window system and the docks settle the canvas size asynchronously."""
    from qtpy.QtCore import QTimer

    def fit(event=None):
        viewer.reset_view()

    def stop():
        try:
            viewer.canvas.events.size.disconnect(fit)
        except (TypeError, ValueError, RuntimeError):   # pragma: no cover - closed
            pass

    viewer.canvas.events.size.connect(fit)
    QTimer.singleShot(0, fit)
    QTimer.singleShot(int(seconds * 1000), stop)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m corrflow_napari.demo",
                                description="corrflow-napari demo on the bundled sample clip")
    p.add_argument("--out", default="out", help="output folder (default: out)")
    p.add_argument("--no-viewer", action="store_true", help="do not open napari")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|mps")
    p.add_argument("--screenshot", default=None, metavar="PNG",
                   help="save the window to PNG once it has settled, then close it")
    args = p.parse_args(argv)
    try:
        run_headless(Path(args.out), device=args.device)
    except InputError as exc:
        print(f"corrflow demo: error: {exc}", file=sys.stderr)
        return 2
    if args.no_viewer:
        return 0
    if not display_available():
        print("no display (DISPLAY/WAYLAND_DISPLAY unset): not opening napari; the outputs "
              "above are the demo.")
        return 0
    import napari
    viewer, _ = open_viewer(Path(args.out))
    if args.screenshot:
        from qtpy.QtCore import QTimer
        QTimer.singleShot(int(SETTLE_S * 1000) + 500,
                          lambda: save_window(viewer, args.screenshot, close=True))
    print("napari is open with the sample and the propagated labels on frame 0: scrub, "
          "repaint a frame, Re-propagate; close the window to finish.")
    napari.run()
    return 0


def save_window(viewer, path, close: bool = False) -> Path:
    """Save the whole napari window (docks included) as a PNG."""
    from imageio.v3 import imwrite
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imwrite(path, viewer.screenshot(canvas_only=False, flash=False))
    print(f"wrote {path}")
    if close:
        viewer.close()
    return path


if __name__ == "__main__":
    sys.exit(main())
