"""Regenerate the README screenshots from a real, shown napari viewer.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/make_screenshots.py

(a hidden viewer screenshots black, so the window must be shown; on a desktop just run
``python scripts/make_screenshots.py``). Writes docs/screenshots/:

* 01_painted_first_frame.png   the sample with its first frame painted
* 02_propagated_frame40.png    after "Propagate", a later frame (40)
* 03_finetune_loss_curve.png   the Fine-tune widget with its loss curve after a short run
* 03_finetune_widget.png       the same widget on its own
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wait(app, cond, timeout: float, what: str) -> None:
    t0 = time.perf_counter()
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{what} did not finish in {timeout:.0f} s")
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--steps", type=int, default=30, help="fine-tuning steps to show")
    ap.add_argument("--frame", type=int, default=40, help="later frame to show")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from imageio.v3 import imwrite
    from qtpy.QtWidgets import QApplication

    from corrflow_napari.demo import open_viewer
    from corrflow_napari.training import TrainConfig

    viewer, docks = open_viewer(show=True)
    app = QApplication.instance()
    win = viewer.window._qt_window
    win.resize(1400, 760)
    labels = viewer.layers["bunny labels"]
    viewer.layers.selection.active = labels
    labels.mode = "paint"
    labels.selected_label = 1
    viewer.dims.set_current_step(0, 0)
    wait(app, lambda: True, 5, "redraw")
    docks["propagate"][1].raise_()
    viewer.reset_view()

    def shot(name):
        wait(app, lambda: True, 5, "redraw")
        img = viewer.screenshot(canvas_only=False, flash=False)
        imwrite(out / name, img)
        print(f"wrote {out / name} {img.shape}")

    shot("01_painted_first_frame.png")

    prop, _ = docks["propagate"]
    prop.propagate()
    wait(app, lambda: not prop.running, 900, "propagation")
    print(prop.status.text())
    viewer.dims.set_current_step(0, min(args.frame, labels.data.shape[0] - 1))
    shot("02_propagated_frame40.png")

    ft, ft_dock = docks["finetune"]
    ft_dock.raise_()
    ft.set_budget(steps=args.steps)
    ft.train_config = TrainConfig.finetune(crop=96, batch=1, centroid_clips=4)
    tmp = Path(tempfile.mkdtemp(prefix="corrflow_screens_"))
    ft.set_output(tmp / "bigbuckbunny_corrflow_finetuned.pt")
    ft.start()
    wait(app, lambda: not ft.running, 900, "fine-tuning")
    print(ft.status.text())
    shot("03_finetune_loss_curve.png")
    img = ft.grab().toImage()
    img.save(str(out / "03_finetune_widget.png"))
    print(f"wrote {out / '03_finetune_widget.png'}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
