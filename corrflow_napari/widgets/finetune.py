"""The "Fine-tune model" dock widget: self-supervised fine-tuning on the loaded clip (the
core's ``training.finetune``) in a worker thread, with a progress bar, a live loss curve,
Stop (keeps the best checkpoint so far) and "Use for propagation"."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError
from ._common import (
    SCRATCH,
    SHIPPED,
    LayerCombo,
    Relay,
    WeightsBox,
    describe_weights,
    device_combo,
    get_model,
    run_guarded,
    shared_weights,
    video_frames,
)
from .loss_plot import LossPlot


def default_output(layer) -> Path:
    """Next to the video file the layer came from, else ``~/corrflow_finetuned.pt``."""
    src = None
    if layer is not None:
        src = getattr(getattr(layer, "source", None), "path", None)
        src = src or layer.metadata.get("corrflow_source")
    if src:
        p = Path(src)
        if p.is_dir():
            return p.parent / f"{p.name}_corrflow_finetuned.pt"
        return p.parent / f"{p.stem}_corrflow_finetuned.pt"
    return Path.home() / "corrflow_finetuned.pt"


def _finetune(frames, weights, device, iters, minutes, out, relay: Relay, cancel, config=None):
    from ..training import finetune
    model = get_model(weights, device)
    ft = finetune(model, frames, iters=iters, minutes=minutes, out=out, cancel=cancel,
                  config=config,
                  progress=lambda step, total, loss: relay.progress.emit(step, total, loss))
    return {"steps": int(getattr(ft, "finetune_steps", 0)),
            "loss": float(getattr(ft, "finetune_loss", float("nan"))),
            "saved": getattr(ft, "weights_path", None) is not None and Path(out).exists()}


class FinetuneWidget(QWidget):
    """Dock widget "Fine-tune model"."""

    run_finished = Signal(str)
    #: emitted in the GUI thread after each optimisation step: (step, loss)
    step_done = Signal(int, float)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self._cancel = threading.Event()
        self._pbar = None
        self._out_user_set = False
        self.output: Path | None = None      # last checkpoint written
        self.last_status: str | None = None
        #: optional ``training.TrainConfig`` (None: the core's fine-tuning defaults)
        self.train_config = None

        self.image_combo = LayerCombo(napari_viewer, Image)
        self.weights = WeightsBox(lab=False, scratch=True, follow_shared=False)
        self.device = device_combo()
        self.budget_kind = QComboBox()
        self.budget_kind.addItems(["steps", "minutes"])
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 1_000_000)
        self.steps_spin.setValue(150)
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.05, 24 * 60)
        self.minutes_spin.setDecimals(2)
        self.minutes_spin.setValue(3.0)
        self.minutes_spin.hide()
        self.out_edit = QLineEdit()
        self.out_browse = QPushButton("…")
        self.start_btn = QPushButton("Start fine-tuning")
        self.stop_btn = QPushButton("Stop (keep best so far)")
        self.stop_btn.setEnabled(False)
        self.use_btn = QPushButton("Use for propagation")
        self.use_btn.setEnabled(False)
        self.plot = LossPlot()
        self.status = QLabel("Fine-tunes a copy of the model on this clip (self-supervised: "
                             "no labels needed). ~1 s per step on a laptop CPU.")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Video", self.image_combo)
        form.addRow("Start from", self.weights)
        form.addRow("Device", self.device)
        brow = QHBoxLayout()
        brow.addWidget(self.steps_spin, 1)
        brow.addWidget(self.minutes_spin, 1)
        brow.addWidget(self.budget_kind)
        form.addRow("Budget", brow)
        orow = QHBoxLayout()
        orow.addWidget(self.out_edit, 1)
        orow.addWidget(self.out_browse)
        form.addRow("Save to", orow)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.start_btn)
        row.addWidget(self.stop_btn)
        lay.addLayout(row)
        lay.addWidget(self.plot)
        lay.addWidget(self.use_btn)
        lay.addWidget(self.status)
        lay.addStretch(1)

        self.budget_kind.currentTextChanged.connect(self._on_budget_kind)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.out_edit.textEdited.connect(self._on_out_edited)
        self.out_browse.clicked.connect(self._browse_out)
        self.start_btn.clicked.connect(self.start)
        self.stop_btn.clicked.connect(self.stop)
        self.use_btn.clicked.connect(self.use_for_propagation)
        self._on_image_changed()

    # ------------------------------------------------------------------ inputs
    def _on_budget_kind(self, kind: str) -> None:
        self.steps_spin.setVisible(kind == "steps")
        self.minutes_spin.setVisible(kind == "minutes")

    def set_budget(self, steps: int | None = None, minutes: float | None = None) -> None:
        if steps is not None:
            self.budget_kind.setCurrentText("steps")
            self.steps_spin.setValue(int(steps))
        elif minutes is not None:
            self.budget_kind.setCurrentText("minutes")
            self.minutes_spin.setValue(float(minutes))

    def _on_image_changed(self, *_):
        if not self._out_user_set:
            self.out_edit.setText(str(default_output(self.image_combo.layer())))

    def _on_out_edited(self, *_):
        self._out_user_set = True

    def set_output(self, path) -> None:
        self._out_user_set = True
        self.out_edit.setText(str(path))

    def _browse_out(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save fine-tuned weights as",
                                              self.out_edit.text(), "Checkpoint (*.pt)")
        if path:
            self.set_output(path)

    @property
    def running(self) -> bool:
        return self._worker is not None

    # ------------------------------------------------------------------ actions
    def start(self) -> None:
        if self._worker is not None:
            show_info("Fine-tuning is already running.")
            return
        try:
            frames = video_frames(self.image_combo.layer())
            text = self.out_edit.text().strip()
            if not text:
                raise InputError("choose where to save the fine-tuned weights (Save to).")
            out = Path(text).expanduser()
            if out.suffix.lower() not in (".pt", ".pth"):
                raise InputError(f"save the fine-tuned weights as a .pt file, not '{out.name}'.")
            if out.parent.exists() and not out.parent.is_dir():
                raise InputError(f"cannot save into {out.parent}: it is not a folder.")
        except InputError as exc:
            show_error(str(exc))
            self.status.setText(str(exc))
            return
        steps = minutes = None
        if self.budget_kind.currentText() == "steps":
            steps = self.steps_spin.value()
        else:
            minutes = self.minutes_spin.value()
        weights = self.weights.value()
        self._cancel = threading.Event()
        self.destroyed.connect(self._cancel.set)    # widget closed: stop the worker
        self._minutes = minutes
        self._t0 = time.perf_counter()
        self._out = out
        self.plot.clear()
        self._pbar = progress(total=steps if steps else int(round(minutes * 60)),
                              desc="Fine-tuning" + (" (s)" if minutes else ""))
        relay = Relay(self)
        relay.progress.connect(self._on_progress)
        self._relay = relay
        self.status.setText(f"Fine-tuning {describe_weights(weights)} for "
                            + (f"{steps} steps" if steps else f"{minutes:g} min")
                            + f"; saving the best weights to {out}…")
        worker = create_worker(run_guarded, _finetune, frames, weights,
                               self.device.currentText(), steps, minutes, str(out), relay,
                               self._cancel, self.train_config, what="fine-tuning",
                               _start_thread=False)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.start_btn.setEnabled(False)
        self.stop_btn.setEnabled(True)
        self.use_btn.setEnabled(False)
        worker.start()

    def stop(self) -> None:
        """Stop after the current step; the best checkpoint so far is kept."""
        self._cancel.set()
        if self._worker is not None:
            self.status.setText("Stopping after this step; keeping the best weights so far…")

    def _on_progress(self, step, total, loss) -> None:
        self.plot.add(step, loss)
        self.step_done.emit(int(step), float(loss))
        if self._pbar is None:
            return
        if self._minutes:
            n = min(int(time.perf_counter() - self._t0), self._pbar.total)
        else:
            n = int(step)
        self._pbar.update(n - self._pbar.n)

    def _on_returned(self, result) -> None:
        status, value = result
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        if status == "error":
            self.last_status = "error"
            show_error(value)
            self.status.setText(value)
        else:
            stopped = self._cancel.is_set()
            self.last_status = "cancelled" if stopped else "done"
            if value["saved"]:
                self.output = self._out
                self.use_btn.setEnabled(True)
                self.status.setText(("Stopped. " if stopped else "Done. ")
                                    + f"{value['steps']} steps; best mean loss "
                                    f"{value['loss']:.4f} saved to {self._out}. "
                                    "Press 'Use for propagation' to use it.")
            else:
                self.status.setText("Stopped before the first step: nothing was saved.")
        self.run_finished.emit(self.last_status)

    def _on_finished(self) -> None:
        self._worker = None
        self.start_btn.setEnabled(True)
        self.stop_btn.setEnabled(False)

    def use_for_propagation(self) -> None:
        """Make the Propagate (and Track) widgets use the fine-tuned checkpoint."""
        if self.output is None or not Path(self.output).exists():
            show_error("no fine-tuned weights yet: run fine-tuning first.")
            return
        shared_weights.use(self.output)
        show_info(f"Propagate labels / Track points now use {Path(self.output).name}.")
        self.status.setText(f"Propagation now uses {self.output}.")


__all__ = ["FinetuneWidget", "default_output", "SHIPPED", "SCRATCH"]
