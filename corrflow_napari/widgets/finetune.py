"""The "Fine-tune model" dock widget: fine-tunes a copy of the model on the loaded clip
(the core's ``training.finetune``: the masks painted in the chosen Labels layer, or the
clip's colours when none is painted) in a worker thread. It shows the measured s/step
and time left, a live loss curve (Advanced), says whether the held-out check kept the
fine-tuned or the starting weights, and "Use for propagation" switches the other docks
to the new file. The output path is shown before starting: next to the video
(numbered, never an existing file unless the user confirms), else in the user data
folder.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..errors import InputError
from ..model.cache import SCRATCH, SHIPPED, describe_weights, get_model, shared_weights
from ..options import option
from ..training.config import TrainConfig
from ._dock import compact_body, hbox, reconnect
from ._pickers import LayerCombo, WeightsBox, device_combo
from ._run import Outcome, RunsInBackground, WidgetRun, duration_text, progress_text
from ._settings_form import SettingsForm
from .labels_edit import detect_keyframes
from .layer_arrays import video_frames
from .loss_plot import LossPlot

SUFFIX = "_finetuned"


def user_data_folder() -> Path:
    """Where fine-tuned weights of clips without a file go (e.g. the bundled sample)."""
    try:
        import platformdirs
        return Path(platformdirs.user_data_dir("corrflow-napari")) / "finetuned"
    except ImportError:            # pragma: no cover - platformdirs comes with napari
        return Path.home() / ".corrflow-napari" / "finetuned"


def _source_path(layer) -> Path | None:
    if layer is None:
        return None
    src = getattr(getattr(layer, "source", None), "path", None)
    src = src or layer.metadata.get("corrflow_source")
    return Path(src) if src else None


def default_output(layer) -> Path:
    """The proposed checkpoint for a video layer: ``<video name>_finetuned.pt`` next to
    the file the layer came from (when that folder is writable), else
    ``<user data folder>/<layer name>_finetuned.pt``; numbered ``_2``, ``_3``... so that
    an existing file is never proposed."""
    src = _source_path(layer)
    if src is not None and os.access(src.parent, os.W_OK):
        folder, stem = src.parent, (src.name if src.is_dir() else src.stem)
    else:
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in
                       (layer.name if layer is not None else "video")).strip("_")
        folder, stem = user_data_folder(), name or "video"
    path, n = folder / f"{stem}{SUFFIX}.pt", 2
    while path.exists():
        path, n = folder / f"{stem}{SUFFIX}_{n}.pt", n + 1
    return path


def ask_overwrite(parent, path: Path) -> bool:
    """Ask before replacing an existing file."""
    answer = QMessageBox.question(
        parent, "Replace file?", f"{path} exists. Replace it with the fine-tuned weights?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


@dataclass(frozen=True)
class FinetuneChoices:
    """The Advanced section's own option (the other rows are pickers)."""

    held_out_check: bool = field(default=True, metadata=option(
        "measure a held-out check before and after, and keep the starting weights when "
        "fine-tuning does not improve it"))


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
    keyframes: dict | None = None  # {t: (H, W) ids} painted frames, None: colours only
    check: bool = True
    label_term: object = None      # training.LabelTerm or None (defaults)


def _finetune(job: FinetuneJob, task) -> dict:
    """Fine-tune; progress reports (bar position, bar length, (step, loss)) where the bar
    counts steps, or seconds when only minutes bound the run; log lines go to the
    status (``task.send``)."""
    from ..training import finetune
    model = get_model(job.weights, job.device)
    t0 = time.perf_counter()
    bar = job.steps or int(round(job.minutes * 60))

    def report(step, total, loss):
        n = step if job.steps else min(int(time.perf_counter() - t0), bar)
        task.progress(n, bar, (step, loss))

    job.out.parent.mkdir(parents=True, exist_ok=True)
    result = finetune(model, job.frames, iters=job.steps, minutes=job.minutes,
                      out=str(job.out), cancel=task.cancel, config=job.config,
                      progress=report, keyframes=job.keyframes, check=job.check,
                      label_term=job.label_term, log=task.send)
    return {"steps": result.steps, "loss": result.best_loss, "summary": result.summary(),
            "saved": result.path is not None and job.out.exists(),
            "kept_start": result.kept_start, "learned": result.learned(),
            "per_step": result.seconds_per_step}


class FinetuneWidget(RunsInBackground, QWidget):
    """Dock widget "Fine-tune model"."""

    run_finished = Signal(str)
    #: emitted in the GUI thread after each optimisation step: (step, loss)
    step_done = Signal(int, float)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._out_user_set = False
        self._watched = None
        self._rate: tuple[float, int] | None = None   # (time, step) of the first report
        self._last_step = 0
        self._t_start = 0.0
        self.output: Path | None = None      # last checkpoint written
        self.last_job: FinetuneJob | None = None
        #: optional ``training.TrainConfig`` / ``LabelTerm`` (None: the core's defaults)
        self.train_config = None
        self.label_term = None
        #: asks before an existing file is replaced (tests replace it)
        self.confirm_overwrite = lambda path: ask_overwrite(self, path)

        self.image_combo = LayerCombo(napari_viewer, Image)
        self.labels_combo = LayerCombo(napari_viewer, Labels)
        self.use_labels = QCheckBox("painted")
        self.use_labels.setChecked(True)
        self.use_labels.setToolTip("learn from the frames painted in this Labels layer "
                                   "(unchecked: the clip's colours only)")
        self.painted = QLabel()
        self.budget_kind = QComboBox()
        self.budget_kind.addItems(["steps", "minutes"])
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 1_000_000)
        self.steps_spin.setValue(TrainConfig.finetune().iters)
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.05, 24 * 60)
        self.minutes_spin.setDecimals(2)
        self.minutes_spin.setValue(3.0)
        self.minutes_spin.hide()
        self.out_edit = QLineEdit()
        self.out_edit.setToolTip("where the fine-tuned weights are saved")
        self.out_browse = QPushButton("…")
        self.start_btn = QPushButton("Start fine-tuning")
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setToolTip("stop after this step; the best weights so far are checked "
                                 "and saved")
        self.use_btn = QPushButton("Use for propagation")
        self.use_btn.setEnabled(False)
        self.rate_label = QLabel()
        self.status = QLabel("Fine-tunes a copy of the model on this clip: the masks you "
                             "painted, or its colours when nothing is painted.")
        self.status.setWordWrap(True)
        self.weights = WeightsBox(lab=False, scratch=True, follow_shared=False)
        self.device = device_combo()
        self.plot = LossPlot(height=90)
        self.advanced = SettingsForm(FinetuneChoices())
        self.check_box = self.advanced.editor("held_out_check")
        extra = self.advanced.body.layout()
        extra.addRow("Start from", self.weights)
        extra.addRow("Device", self.device)
        extra.addRow(self.plot)

        form = QFormLayout()
        form.addRow("Video", self.image_combo)
        form.addRow("Labels", hbox(self.labels_combo, self.use_labels,
                                   fixed=(self.use_labels,)))
        form.addRow("", self.painted)
        form.addRow("Budget", hbox(self.steps_spin, self.minutes_spin, self.budget_kind,
                                   fixed=(self.budget_kind,)))
        form.addRow("Save to", hbox(self.out_edit, self.out_browse, fixed=(self.out_browse,)))
        lay = compact_body(self)
        lay.addLayout(form)
        lay.addLayout(hbox(self.start_btn, self.stop_btn))
        lay.addWidget(self.rate_label)
        lay.addWidget(self.status)
        lay.addWidget(self.use_btn)
        lay.addWidget(self.advanced)
        lay.addStretch(1)

        self.runner = WidgetRun(
            self, what="fine-tuning", title="Fine-tuning", run_buttons=(self.start_btn,),
            cancel_button=self.stop_btn, status=self.status,
            busy_text="Fine-tuning is already running.",
            cancel_text="Stopping after this step; checking the best weights so far…",
            unit="step", finished=self.run_finished.emit)
        self._detect_timer = QTimer(self)
        self._detect_timer.setSingleShot(True)
        self._detect_timer.setInterval(250)
        self._detect_timer.timeout.connect(self.refresh_painted)
        self.budget_kind.currentTextChanged.connect(self._on_budget_kind)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.labels_combo.currentIndexChanged.connect(self._on_labels_changed)
        self.use_labels.toggled.connect(lambda *_: self.refresh_painted())
        self.out_edit.textEdited.connect(self._on_out_edited)
        self.out_browse.clicked.connect(self._browse_out)
        self.start_btn.clicked.connect(self.start)
        self.use_btn.clicked.connect(self.use_for_propagation)
        self._on_image_changed()
        self._on_labels_changed()

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

    def _on_labels_changed(self, *_):
        self._watched = reconnect(self._watched, self.labels_combo.layer(), "paint",
                                  self._on_paint)
        self.refresh_painted()

    def _on_paint(self, event=None):
        try:
            self._detect_timer.start()
        except RuntimeError:      # the widget was deleted
            pass

    def painted_frames(self) -> list[int]:
        """The frames painted in the chosen Labels layer ([] when not learning from it)."""
        layer = self.labels_combo.layer()
        if not self.use_labels.isChecked() or layer is None or layer.data.ndim != 3:
            return []
        return detect_keyframes(layer)

    def refresh_painted(self) -> list[int]:
        keys = self.painted_frames()
        if not self.use_labels.isChecked():
            text = "colours only"
        elif keys:
            shown = ", ".join(map(str, keys[:8])) + (" …" if len(keys) > 8 else "")
            text = f"painted frames {shown}: their masks are learned"
        else:
            text = "no painted frame: colours only"
        self.painted.setText(text)
        return keys

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
                          on_progress=self._on_progress, on_item=self._on_log,
                          total=steps if steps else int(round(minutes * 60)),
                          title="Fine-tuning" + (" (s)" if minutes else ""))

    def _keyframes(self, frames) -> dict | None:
        keys = self.refresh_painted()
        if not keys:
            return None
        data = self.labels_combo.layer().data
        if tuple(data.shape) != tuple(frames.shape[:3]):
            raise InputError(f"the Labels layer is {tuple(data.shape)} but the video "
                             f"{tuple(frames.shape[:3])}; pick the labels of this video.")
        return {t: np.asarray(data[t]).astype(np.int64) for t in keys}

    def _prepare(self, steps: int | None, minutes: float | None) -> FinetuneJob:
        frames = video_frames(self.image_combo.layer())
        text = self.out_edit.text().strip()
        if not text:
            raise InputError("choose where to save the fine-tuned weights (Save to).")
        out = Path(text).expanduser()
        if out.suffix.lower() not in (".pt", ".pth"):
            raise InputError(f"save the fine-tuned weights as a .pt file, not '{out.name}'.")
        if out.exists() and (out.is_dir() or not self.confirm_overwrite(out)):
            raise InputError(f"{out} exists; choose another file (Save to).")
        if out.parent.exists() and not out.parent.is_dir():
            raise InputError(f"cannot save into {out.parent}: it is not a folder.")
        keyframes = self._keyframes(frames)
        job = FinetuneJob(frames, self.weights.value(), self.device.currentText(), steps,
                          minutes, out, self.train_config, keyframes,
                          bool(self.check_box.isChecked()), self.label_term)
        self.last_job = job
        self.plot.clear()
        self.use_btn.setEnabled(False)
        self._rate, self._last_step, self._t_start = None, 0, time.perf_counter()
        self.rate_label.setText("")
        learn = (f"the painted masks of frame(s) {', '.join(map(str, sorted(keyframes)))}"
                 if keyframes else "colours only")
        self.status.setText(f"Fine-tuning {describe_weights(job.weights)} ({learn}) for "
                            + (f"{steps} steps" if steps else f"{minutes:g} min")
                            + (": measuring the held-out check first…" if job.check else "…"))
        return job

    def stop(self) -> None:
        """Stop after the current step; the best weights so far are checked and saved."""
        self.runner.cancel()

    def _on_log(self, line) -> None:
        if not self.runner.cancelled:
            self.status.setText(str(line))

    def _on_progress(self, done, total, extra) -> None:
        step, loss = extra
        self.plot.add(step, loss)
        self.step_done.emit(int(step), float(loss))
        now = time.perf_counter()
        if self._rate is None:
            self._rate = (now, int(step))       # the first step's report: model loaded
        t0, s0 = self._rate
        if step < self._last_step:              # a late report: the text is newer
            return
        self._last_step = int(step)
        rate = (now - t0) / (step - s0) if step > s0 else None
        job = self.last_job
        if job.steps:
            text = progress_text(int(step), job.steps, rate, "step")
        else:
            left = job.minutes * 60 - (now - self._t_start)
            text = progress_text(int(step), 0, rate, "step") + \
                f", {duration_text(left)} left"
        self.rate_label.setText(text + (", then the check" if job.check else ""))

    def _show(self, outcome: Outcome) -> None:
        if outcome.status == "error":
            return
        value, out = outcome.value, self.last_job.out
        if not self._out_user_set:
            self._on_image_changed()          # the next run gets the next free name
        if not value["saved"]:
            self.status.setText("Stopped before the first step: nothing was saved.")
            return
        self.output = out
        rate = f" ({value['per_step']:.2g} s/step)" if value["per_step"] else ""
        head = ("Stopped. " if outcome.status == "cancelled" else "Done. ") + \
            f"{value['steps']} steps{rate}, learning from {value['learned']}; " \
            f"{value['summary']}"
        if value["kept_start"]:
            self.use_btn.setEnabled(False)
            self.status.setText(f"{head}. They are saved unchanged to {out}; propagation "
                                "keeps its weights.")
        else:
            self.use_btn.setEnabled(True)
            self.status.setText(f"{head}; saved to {out}. Press 'Use for propagation'.")

    def use_for_propagation(self) -> None:
        """Make the Propagate (and Track) widgets use the fine-tuned checkpoint."""
        if self.output is None or not Path(self.output).exists():
            show_error("no fine-tuned weights yet: run fine-tuning first.")
            return
        shared_weights.use(self.output)
        show_info(f"Propagate labels / Track points now use {Path(self.output).name}.")
        self.status.setText(f"Propagation now uses {self.output}.")


__all__ = ["FinetuneWidget", "default_output", "user_data_folder", "SHIPPED", "SCRATCH"]
