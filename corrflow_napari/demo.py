"""``make demo``: propagate the bundled sample's first-frame mask and write the results;
then, when a display is available, open napari with the sample and the widgets docked.

    python -m corrflow_napari.demo --out out [--no-viewer] [--device auto]

Writes ``OUT/masks/00000.png ...`` (indexed PNGs, one per frame) and ``OUT/overlay.gif``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import InputError


def display_available() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_headless(out: Path, device: str = "auto", log=print) -> Path:
    """Propagate the sample's frame-0 mask through the clip; write masks + overlay."""
    from .cli import ProgressBar
    from .io import davis_palette, overlay, write_indexed_png, write_video
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
    write_video(out / "overlay.gif", overlay(frames, labels, palette), fps=sample_fps())
    log(f"wrote {masks}/00000.png .. {len(labels) - 1:05d}.png and {out / 'overlay.gif'}")
    return out


def open_viewer(show: bool = True):
    """napari with the sample loaded and the three widgets docked.

    Returns ``(viewer, {name: (widget, dock)})`` for "propagate", "track", "finetune".
    """
    import napari

    from .widgets import FinetuneWidget, PropagateWidget, TrackWidget
    viewer = napari.Viewer(title="corrflow-napari demo", show=show)
    viewer.open_sample("corrflow-napari", "bigbuckbunny")
    docks = {}
    for key, cls, name in (("propagate", PropagateWidget, "Propagate labels"),
                           ("track", TrackWidget, "Track points"),
                           ("finetune", FinetuneWidget, "Fine-tune model")):
        w = cls(viewer)
        dock = viewer.window.add_dock_widget(w, name=name, area="right",
                                             tabify=key != "propagate")
        docks[key] = (w, dock)
    from qtpy.QtCore import QTimer
    QTimer.singleShot(0, docks["propagate"][1].raise_)   # after napari raised the last tab
    viewer.layers.selection.active = viewer.layers["bunny labels"]
    return viewer, docks


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m corrflow_napari.demo",
                                description="corrflow-napari demo on the bundled sample clip")
    p.add_argument("--out", default="out", help="output folder (default: out)")
    p.add_argument("--no-viewer", action="store_true", help="do not open napari")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|mps")
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
    open_viewer()
    print("napari is open with the sample: paint, press Propagate, scrub; close the window "
          "to finish.")
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
