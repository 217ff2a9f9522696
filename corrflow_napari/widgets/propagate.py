"""The "Propagate labels" dock widget: gathers layers, keyframes and settings, runs the
core's ``propagate_labels`` in a worker thread (``WidgetRun``) and writes each finished
frame into the Labels layer; the whole run is one undoable edit of that layer, after
every earlier one (``LabelsEdit``). Shows "frame 31/96, 0.8 s/frame, 52 s left", can
follow the frames as they are written, and exports the labels (PNG folder or tif)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError
from ..model.cache import describe_weights, get_model
from ..propagation import PropagationSettings
from ._pickers import FrameRange, LayerCombo, WeightsBox, device_combo
from ._run import Outcome, RunsInBackground, WidgetRun
from ._settings_form import SettingsForm
from .export_labels import ask_export_path, export_layer
from .labels_edit import WRITTEN_KEY, LabelsEdit, detect_keyframes
from .layer_arrays import current_frame, show_frame, video_frames

__all__ = ["PropagateWidget", "parse_keyframes", "detect_keyframes", "WRITTEN_KEY"]


def parse_keyframes(text: str, n_frames: int) -> list[int]:
    """Frame numbers from text like ``"0, 40"`` (commas, semicolons or spaces)."""
    keys = set()
    for part in text.replace(";", ",").replace(" ", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            raise InputError(f"keyframes: '{part}' is not a frame number; list frames like "
                             "'0, 40'.")
        try:
            t = int(part)
        except ValueError:
            raise InputError(f"keyframes: '{part}' is not a frame number; list frames like "
                             "'0, 40'.") from None
        if not 0 <= t < n_frames:
            raise InputError(f"keyframe {t} is out of range: the video has {n_frames} frames "
                             f"(0..{n_frames - 1}).")
        keys.add(t)
    return sorted(keys)


@dataclass
class PropagationJob:
    """Everything one run needs, gathered on the GUI thread."""

    frames: object                 # (T, H, W, 3) uint8 array-like
    keyframes: dict                # {t: (H, W) ids}
    start: int
    stop: int
    direction: str
    weights: str
    device: str
    settings: PropagationSettings


def _propagate(job: PropagationJob, task) -> None:
    from ..propagation import propagate_labels
    model = get_model(job.weights, job.device)
    propagate_labels(model, job.frames, job.keyframes, progress=task.progress,
                     cancel=task.cancel, settings=job.settings, start=job.start,
                     stop=job.stop, direction=job.direction,
                     on_frame=lambda t, lab: task.send((int(t), lab)))


class PropagateWidget(RunsInBackground, QWidget):
    """Dock widget "Propagate labels"."""

    #: emitted in the GUI thread after frame t was written into the Labels layer
    frame_written = Signal(int)
    #: emitted when a run ends: "done", "cancelled" or "error"
    run_finished = Signal(str)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._edit: LabelsEdit | None = None
        self.last_weights: str | None = None     # weights used by the last run
        self.last_job: PropagationJob | None = None

        self.image_combo = LayerCombo(napari_viewer, Image)
        self.labels_combo = LayerCombo(napari_viewer, Labels)
        self.keyframes_edit = QLineEdit()
        self.keyframes_edit.setPlaceholderText("painted frames, e.g. 0, 40")
        self.keyframes_edit.setToolTip(
            "Frames used as ground truth (never overwritten). Filled in with the frames you "
            "painted; edit to add or remove frames.")
        self.detect_btn = QToolButton()
        self.detect_btn.setText("↻")
        self.detect_btn.setToolTip("detect painted frames again")
        self.direction = QComboBox()
        self.direction.addItems(["both", "forward", "backward"])
        self.direction.setToolTip("both: forward from every keyframe and backward before "
                                  "the first")
        self.frame_range = FrameRange()
        self.start_spin, self.end_spin = self.frame_range.start_spin, self.frame_range.end_spin
        self.weights = WeightsBox(lab=True)
        self.device = device_combo()
        self.advanced = SettingsForm(PropagationSettings())
        self.propagate_btn = QPushButton("Propagate")
        self.repropagate_btn = QPushButton("Re-propagate from current frame")
        self.repropagate_btn.setToolTip(
            "The frame shown becomes a keyframe; frames after it, up to the next keyframe, "
            "are recomputed.")
        self.cancel_btn = QPushButton("Cancel")
        self.follow = QCheckBox("Follow")
        self.follow.setToolTip("show each frame as it is written")
        self.export_btn = QPushButton("Export labels…")
        self.export_btn.setToolTip("save the Labels layer as a folder of indexed PNGs "
                                   "(00000.png ..., as the command line writes) or a tif")
        self.progress = QLabel("")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Video", self.image_combo)
        form.addRow("Labels", self.labels_combo)
        krow = QHBoxLayout()
        krow.addWidget(self.keyframes_edit, 1)
        krow.addWidget(self.detect_btn)
        form.addRow("Keyframes", krow)
        form.addRow("Direction", self.direction)
        form.addRow("Frames", self.frame_range)
        form.addRow("Features", self.weights)
        form.addRow("Device", self.device)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.advanced)
        lay.addWidget(self.propagate_btn)
        lay.addWidget(self.repropagate_btn)
        row = QHBoxLayout()
        row.addWidget(self.cancel_btn, 1)
        row.addWidget(self.follow)
        row.addWidget(self.export_btn, 1)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)

        self.runner = WidgetRun(
            self, what="propagation", title="Propagating labels",
            run_buttons=(self.propagate_btn, self.repropagate_btn),
            cancel_button=self.cancel_btn, status=self.status,
            busy_text="Propagation is already running; cancel it first.",
            cancel_text="Cancelling… (stops after the current frame)",
            progress_label=self.progress, finished=self.run_finished.emit)
        self._detect_timer = QTimer(self)
        self._detect_timer.setSingleShot(True)
        self._detect_timer.setInterval(250)
        self._detect_timer.timeout.connect(self.refresh_keyframes)
        self._watched = None

        self.propagate_btn.clicked.connect(self.propagate)
        self.repropagate_btn.clicked.connect(self.repropagate_from_current)
        self.detect_btn.clicked.connect(self.refresh_keyframes)
        self.export_btn.clicked.connect(lambda *_: self.export_labels())
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.labels_combo.currentIndexChanged.connect(self._on_labels_changed)
        self._on_image_changed()
        self._on_labels_changed()

    def settings(self) -> PropagationSettings:
        """The propagation settings of the Advanced section."""
        return self.advanced.settings()

    # ------------------------------------------------------------------ layer tracking
    def _n_frames(self) -> int:
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        layer = image if image is not None else labels
        return int(layer.data.shape[0]) if layer is not None and layer.data.ndim >= 3 else 1

    def _on_image_changed(self, *_):
        self.frame_range.set_count(self._n_frames())

    def _on_labels_changed(self, *_):
        if self._watched is not None:
            try:
                self._watched.events.paint.disconnect(self._on_paint)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._watched = self.labels_combo.layer()
        if self._watched is not None:
            self._watched.events.paint.connect(self._on_paint)
        self._on_image_changed()
        self.refresh_keyframes()

    def _on_paint(self, event=None):
        if self._edit is not None and self._edit.committing:
            return
        try:
            self._detect_timer.start()
        except RuntimeError:
            pass

    def refresh_keyframes(self) -> list[int]:
        """Fill the keyframe list with the frames the user painted."""
        layer = self.labels_combo.layer()
        keys = detect_keyframes(layer) if layer is not None and layer.data.ndim == 3 else []
        self.keyframes_edit.setText(", ".join(str(k) for k in keys))
        return keys

    def keyframes(self) -> list[int]:
        return parse_keyframes(self.keyframes_edit.text(), self._n_frames())

    # ------------------------------------------------------------------ actions
    def propagate(self) -> None:
        """Propagate the keyframes over the chosen frame range and direction."""
        self._start(from_current=False)

    def repropagate_from_current(self) -> None:
        """The current frame becomes a keyframe; recompute the frames after it up to the
        next keyframe."""
        self._start(from_current=True)

    def cancel(self) -> None:
        self.runner.cancel()

    def export_labels(self, path=None) -> list | None:
        """Save the Labels layer to ``path`` (asked for when None): a folder of indexed
        PNGs, or a tif stack for a ``.tif`` path. Returns the files written."""
        layer = self.labels_combo.layer()
        try:
            if self.running:
                raise InputError("propagation is running: export when it has finished.")
            if path is None:
                if layer is None:
                    raise InputError("no Labels layer to export: pick one in the Labels "
                                     "box.")
                path = ask_export_path(self, layer)
                if path is None:
                    return None
            return export_layer(layer, path)
        except InputError as exc:
            show_error(str(exc))
            self.status.setText(str(exc))
            return None

    def _start(self, from_current: bool) -> None:
        self.runner.start(lambda: self._prepare(from_current), _propagate, self._show,
                          on_item=self._on_frame,
                          what="re-propagation" if from_current else "propagation")

    def _frame_range(self, labels, keys: list[int], from_current: bool, t_total: int):
        """(keyframes, start, stop, direction) for a run."""
        if not from_current:
            start, stop = self.frame_range.span()
            if stop <= start:
                raise InputError(f"frame range {start} to {stop - 1} is empty; the first "
                                 "frame must not be after the last.")
            return keys, start, stop, self.direction.currentText()
        k = current_frame(self.viewer, labels)
        if not np.asarray(labels.data[k]).any():
            raise InputError(f"frame {k} has no labels: paint the correction on this "
                             "frame first, then re-propagate from it.")
        keys = sorted(set(keys) | {k})
        later = [j for j in keys if j > k]
        stop = later[0] if later else t_total
        if stop <= k + 1:
            raise InputError(f"nothing to re-propagate after frame {k}: the next frame "
                             "is a keyframe or the end of the video.")
        return keys, k, stop, "forward"

    def _prepare(self, from_current: bool) -> PropagationJob:
        """Check the inputs (InputError), then lock the Labels layer for the run."""
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        frames = video_frames(image)
        if labels is None:
            raise InputError("no Labels layer: add one (layer list: 'new labels layer') and "
                             "paint the object on at least one frame.")
        t_total, h, w = (int(s) for s in frames.shape[:3])
        if tuple(labels.data.shape) != (t_total, h, w):
            raise InputError(f"Labels layer '{labels.name}' has shape "
                             f"{tuple(labels.data.shape)} but the video is {(t_total, h, w)} "
                             "(frames, height, width); create the Labels layer while the "
                             "video is shown so that they match.")
        keys, start, stop, direction = self._frame_range(labels, self.keyframes(),
                                                         from_current, t_total)
        if not keys:
            raise InputError("no keyframes: paint the object on at least one frame of the "
                             f"Labels layer '{labels.name}' (or list painted frames).")
        masks = {k: np.array(labels.data[k], copy=True) for k in keys}
        job = PropagationJob(frames, masks, start, stop, direction, self.weights.value(),
                             self.device.currentText(), self.settings())
        self._edit = LabelsEdit(labels, masks, on_refused=self._refuse_paint)
        self.last_job, self.last_weights = job, job.weights
        self.status.setText(f"Propagating frames {job.start}..{job.stop - 1} "
                            f"({job.direction}) with the {describe_weights(job.weights)}…")
        return job

    # ------------------------------------------------------------------ GUI thread
    def _on_frame(self, item) -> None:
        t, lab = item
        edit = self._edit
        if edit is None or not edit.write(t, lab):     # keyframes are never overwritten
            return
        try:
            if self.follow.isChecked() and current_frame(self.viewer, edit.layer) != t:
                show_frame(self.viewer, edit.layer, t)    # slicing shows the new frame
            elif current_frame(self.viewer, edit.layer) == t:
                edit.layer.refresh()
        except Exception:   # pragma: no cover - display only
            pass
        self.frame_written.emit(t)

    def _refuse_paint(self) -> None:
        show_info("Painting is off while labels are propagated into this layer: wait for "
                  "the run to finish or cancel it.")

    def _show(self, outcome: Outcome) -> None:
        edit = self._edit
        if edit is None:
            return
        edit.finish()
        self._edit = None
        n = edit.n_written
        if outcome.status == "error":
            outcome.note = f" ({n} frames were written; Ctrl+Z undoes them)" if n else ""
        elif outcome.status == "cancelled":
            text = f"Cancelled: {n} frames written (Ctrl+Z on the Labels layer undoes the run)."
            show_info(text)
            self.status.setText(text)
        else:
            self.status.setText(f"Propagated {n} frames with the "
                                f"{describe_weights(self.last_weights)} (Ctrl+Z undoes).")
        self.refresh_keyframes()
