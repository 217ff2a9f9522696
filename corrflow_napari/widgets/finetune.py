"""The "Fine-tune model" dock widget: self-supervised fine-tuning on the loaded clip (the
core's ``training.finetune``) in a worker thread, with a progress bar, a live loss curve,
Stop (keeps the best checkpoint so far) and "Use for propagation"."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from napari.layers import Image
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
from ..model.cache import SCRATCH, SHIPPED, describe_weights, get_model, shared_weights
from ._pickers import LayerCombo, WeightsBox, device_combo
from ._run import Outcome, RunsInBackground, WidgetRun
from .layer_arrays import video_frames
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


@dataclass
class FinetuneJob:
    """Everything one run needs, gathered on the GUI thread (``steps`` or ``minutes``)."""

    frames: object                 # (T, H, W, 3) uint8 array-like
    weights: str
    device: str
    steps: int | None
    minutes: float | None
    out: Path
    config: object = None          # training.TrainConfig or None (fine-tuning defaults)


def _finetune(job: FinetuneJob, task) -> dict:
    """Fine-tune; progress reports (bar position, bar length, (step, loss)) where the bar
    counts steps, or seconds when only minutes bound the run."""
    from ..training import finetune
    model = get_model(job.weights, job.device)
    t0 = time.perf_counter()
    bar = job.steps or int(round(job.minutes * 60))

    def report(step, total, loss):
        n = step if job.steps else min(int(time.perf_counter() - t0), bar)
        task.progress(n, bar, (step, loss))

    result = finetune(model, job.frames, iters=job.steps, minutes=job.minutes,
                      out=str(job.out), cancel=task.cancel, config=job.config,
                      progress=report)
    return {"steps": result.steps, "loss": result.best_loss,
            "saved": result.path is not None and job.out.exists()}


class FinetuneWidget(RunsInBackground, QWidget):
    """Dock widget "Fine-tune model"."""

    run_finished = Signal(str)
    #: emitted in the GUI thread after each optimisation step: (step, loss)
    step_done = Signal(int, float)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._out_user_set = False
        self.output: Path | None = None      # last checkpoint written
        self.last_job: FinetuneJob | None = None
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

        self.runner = WidgetRun(
            self, what="fine-tuning", title="Fine-tuning", run_buttons=(self.start_btn,),
            cancel_button=self.stop_btn, status=self.status,
            busy_text="Fine-tuning is already running.",
            cancel_text="Stopping after this step; keeping the best weights so far…",
            unit="step", finished=self.run_finished.emit)
        self.budget_kind.currentTextChanged.connect(self._on_budget_kind)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.out_edit.textEdited.connect(self._on_out_edited)
        self.out_browse.clicked.connect(self._browse_out)
        self.start_btn.clicked.connect(self.start)
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

    # ------------------------------------------------------------------ actions
    def start(self) -> None:
        if self.budget_kind.currentText() == "steps":
            steps, minutes = self.steps_spin.value(), None
        else:
            steps, minutes = None, self.minutes_spin.value()
        self.runner.start(lambda: self._prepare(steps, minutes), _finetune, self._show,
                          on_progress=self._on_progress,
                          total=steps if steps else int(round(minutes * 60)),
                          title="Fine-tuning" + (" (s)" if minutes else ""))

    def _prepare(self, steps: int | None, minutes: float | None) -> FinetuneJob:
        frames = video_frames(self.image_combo.layer())
        text = self.out_edit.text().strip()
        if not text:
            raise InputError("choose where to save the fine-tuned weights (Save to).")
        out = Path(text).expanduser()
        if out.suffix.lower() not in (".pt", ".pth"):
            raise InputError(f"save the fine-tuned weights as a .pt file, not '{out.name}'.")
        if out.parent.exists() and not out.parent.is_dir():
            raise InputError(f"cannot save into {out.parent}: it is not a folder.")
        job = FinetuneJob(frames, self.weights.value(), self.device.currentText(), steps,
                          minutes, out, self.train_config)
        self.last_job = job
        self.plot.clear()
        self.use_btn.setEnabled(False)
        self.status.setText(f"Fine-tuning {describe_weights(job.weights)} for "
                            + (f"{steps} steps" if steps else f"{minutes:g} min")
                            + f"; saving the best weights to {out}…")
        return job

    def stop(self) -> None:
        """Stop after the current step; the best checkpoint so far is kept."""
        self.runner.cancel()

    def _on_progress(self, done, total, extra) -> None:
        step, loss = extra
        self.plot.add(step, loss)
        self.step_done.emit(int(step), float(loss))

    def _show(self, outcome: Outcome) -> None:
        if outcome.status == "error":
            return
        value, out = outcome.value, self.last_job.out
        if value["saved"]:
            self.output = out
            self.use_btn.setEnabled(True)
            self.status.setText(("Stopped. " if outcome.status == "cancelled" else "Done. ")
                                + f"{value['steps']} steps; best mean loss "
                                f"{value['loss']:.4f} saved to {out}. "
                                "Press 'Use for propagation' to use it.")
        else:
            self.status.setText("Stopped before the first step: nothing was saved.")

    def use_for_propagation(self) -> None:
        """Make the Propagate (and Track) widgets use the fine-tuned checkpoint."""
        if self.output is None or not Path(self.output).exists():
            show_error("no fine-tuned weights yet: run fine-tuning first.")
            return
        shared_weights.use(self.output)
        show_info(f"Propagate labels / Track points now use {Path(self.output).name}.")
        self.status.setText(f"Propagation now uses {self.output}.")


__all__ = ["FinetuneWidget", "default_output", "SHIPPED", "SCRATCH"]
