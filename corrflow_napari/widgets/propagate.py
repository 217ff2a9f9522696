"""The "Propagate labels" dock widget: gathers layers, keyframes and settings, runs the
core's ``propagate`` in a worker thread (``WidgetRun``) and writes each finished frame
into the Labels layer; the whole run is one undoable edit of that layer, after every
earlier one (``LabelsEdit``). It shows "frame 31/96, 0.8 s/frame, 52 s left", can follow
the frames as they are written, keeps the video's features between runs (a re-run after
a correction recomputes only the frames it can change), plots the per-frame confidence
with a button to the least confident frame, and exports the labels (PNG folder or tif).
"""
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
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QWidget,
)

from ..errors import InputError
from ..model.cache import describe_weights, get_model
from ..propagation import PropagationSettings, affected_range
from ._dock import compact_body, hbox, reconnect
from ._pickers import FrameRange, LayerCombo, WeightsBox, device_combo
from ._run import Outcome, RunsInBackground, WidgetRun, duration_text
from ._settings_form import SettingsForm
from .confidence_strip import (
    CONFIDENCE_KEY,
    ConfidenceStrip,
    least_confident,
    merge_confidence,
)
from .export_labels import ask_export_path, export_layer
from .feature_store import LayerFeatureCache
from .labels_edit import (
    WRITTEN_KEY,
    LabelsEdit,
    detect_keyframes,
    parse_keyframes,
    unmark_written,
)
from .layer_arrays import current_frame, show_frame, video_frames

__all__ = ["PropagateWidget", "parse_keyframes", "detect_keyframes", "WRITTEN_KEY"]


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
    cache: object = None           # the Image layer's FeatureCache
    video_key: object = None


def _propagate(job: PropagationJob, task):
    from ..propagation import propagate
    model = get_model(job.weights, job.device)
    return propagate(model, job.frames, job.keyframes, progress=task.progress,
                     cancel=task.cancel, settings=job.settings, start=job.start,
                     stop=job.stop, direction=job.direction,
                     on_frame=lambda t, lab: task.send((int(t), lab)),
                     cache=job.cache, video_key=job.video_key,
                     keep_labels=False)    # the Labels layer holds them


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
        self.features = LayerFeatureCache()      # kept between runs on one video

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
        self.direction.setToolTip("both: every frame from the keyframes on both sides of it "
                                  "(before the first / after the last: from that one)")
        self.frame_range = FrameRange()
        self.start_spin, self.end_spin = self.frame_range.start_spin, self.frame_range.end_spin
        self.weights = WeightsBox(lab=True)
        self.device = device_combo()
        self.advanced = SettingsForm(PropagationSettings())
        self.advanced.body.layout().insertRow(0, "device", self.device)
        self.propagate_btn = QPushButton("Propagate")
        self.repropagate_btn = QPushButton("Re-propagate from here")
        self.repropagate_btn.setToolTip(
            "After repainting the frame shown: it becomes a keyframe and only the frames it "
            "can change (up to the keyframes on either side) are recomputed.")
        self.cancel_btn = QPushButton("Cancel")
        self.follow = QCheckBox("Follow")
        self.follow.setToolTip("show each frame as it is written")
        self.export_btn = QPushButton("Export labels…")
        self.export_btn.setToolTip("save the Labels layer as a folder of indexed PNGs "
                                   "(00000.png ..., as the command line writes) or a tif")
        self.strip = ConfidenceStrip()
        self.strip_label = QLabel("Confidence")
        self.worst_btn = QPushButton("Go to least confident")
        self.worst_btn.setToolTip("show the least confident frame that is not a keyframe: "
                                  "the first to check and repaint")
        self.progress = QLabel("")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Video", self.image_combo)
        form.addRow("Labels", self.labels_combo)
        form.addRow("Keyframes", hbox(self.keyframes_edit, self.detect_btn,
                                      fixed=(self.detect_btn,)))
        form.addRow("Frames", hbox(self.frame_range, self.direction, fixed=(self.direction,)))
        form.addRow("Features", self.weights)
        lay = compact_body(self)
        lay.addLayout(form)
        lay.addWidget(self.advanced)
        fixed = (self.follow, self.worst_btn)
        lay.addLayout(hbox(self.propagate_btn, self.repropagate_btn))
        lay.addLayout(hbox(self.cancel_btn, self.follow, self.export_btn, fixed=fixed))
        lay.addLayout(hbox(self.strip_label, self.strip, self.worst_btn,
                           fixed=fixed + (self.strip_label,)))
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)

        self.runner = WidgetRun(
            self, what="propagation", title="Propagating labels",
            run_buttons=(self.propagate_btn, self.repropagate_btn),
            cancel_button=self.cancel_btn, status=self.status,
            busy_text="Propagation is already running; cancel it first.",
            cancel_text="Cancelling… (stops after the current frame)",
            progress_label=self.progress, finished=self.run_finished.emit,
            summary=lambda _, seconds: (f"{self._written} frames written in "
                                        f"{duration_text(seconds)}"))
        self._written = 0
        self._detect_timer = QTimer(self)
        self._detect_timer.setSingleShot(True)
        self._detect_timer.setInterval(250)
        self._detect_timer.timeout.connect(self.refresh_keyframes)
        self._watched = None
        self._image = None

        self.propagate_btn.clicked.connect(self.propagate)
        self.repropagate_btn.clicked.connect(self.repropagate_from_current)
        self.detect_btn.clicked.connect(self.refresh_keyframes)
        self.export_btn.clicked.connect(lambda *_: self.export_labels())
        self.worst_btn.clicked.connect(self.go_to_least_confident)
        self.strip.frame_clicked.connect(self._show_frame)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.labels_combo.currentIndexChanged.connect(self._on_labels_changed)
        napari_viewer.dims.events.current_step.connect(self._on_step)
        napari_viewer.layers.events.removed.connect(self._on_removed)
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
        self._image = reconnect(self._image, self.image_combo.layer(), "data",
                                self._on_image_data)
        self.frame_range.set_count(self._n_frames())

    def _on_image_data(self, event=None):
        """New pixels in the Image layer: its kept features are stale."""
        self.features.forget(event.source if event is not None else self._image)

    def _on_removed(self, event=None):
        layer = getattr(event, "value", None)
        if layer is not None:
            self.features.forget(layer)

    def _on_labels_changed(self, *_):
        self._watched = reconnect(self._watched, self.labels_combo.layer(), "paint",
                                  self._on_paint)
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
        self._update_strip(keys)
        return keys

    def keyframes(self) -> list[int]:
        return parse_keyframes(self.keyframes_edit.text(), self._n_frames())

    # ------------------------------------------------------------------ confidence
    def confidence(self) -> np.ndarray | None:
        """(T,) per-frame confidence of the Labels layer's propagated frames (NaN: not
        propagated), kept in its metadata; None before a run."""
        layer = self.labels_combo.layer()
        return None if layer is None else layer.metadata.get(CONFIDENCE_KEY)

    def _update_strip(self, keys=None) -> None:
        conf = self.confidence()
        if keys is None:
            try:
                keys = self.keyframes()
            except InputError:
                keys = []
        self.strip.set_confidence(conf, keys)
        self.worst_btn.setEnabled(conf is not None and least_confident(conf, keys) is not None)
        self._on_step()

    def _on_step(self, event=None) -> None:
        layer = self.labels_combo.layer()
        try:
            if layer is not None:
                self.strip.set_current(current_frame(self.viewer, layer))
        except RuntimeError:      # the Qt widget was deleted (viewer closing)
            pass

    def _show_frame(self, t: int) -> None:
        layer = self.labels_combo.layer() or self.image_combo.layer()
        if layer is not None:
            show_frame(self.viewer, layer, t)

    def go_to_least_confident(self) -> int | None:
        """Show the least confident frame that is not a keyframe; returns it (None when
        nothing was propagated yet)."""
        conf = self.confidence()
        t = None if conf is None else least_confident(conf, self.keyframes())
        if t is None:
            show_info("no propagated frame to check yet: press Propagate first.")
            return None
        self._show_frame(t)
        self.status.setText(f"Frame {t}: confidence {conf[t]:.2f}, the lowest of the "
                            "propagated frames. Repaint it if it is wrong, then "
                            "Re-propagate from here.")
        return t

    # ------------------------------------------------------------------ actions
    def propagate(self) -> None:
        """Propagate the keyframes over the chosen frame range and direction."""
        self._start(from_current=False)

    def repropagate_from_current(self) -> None:
        """The current frame becomes a keyframe; recompute the frames it can change: up to
        the keyframes on either side, within the frame range when it lies in it."""
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

    def _frame_range(self, labels, keys: list[int], from_current: bool, t_total: int,
                     settings: PropagationSettings):
        """(keyframes, start, stop, direction) for a run."""
        direction = self.direction.currentText()
        if not from_current:
            start, stop = self.frame_range.span()
            if stop <= start:
                raise InputError(f"frame range {start} to {stop - 1} is empty; the first "
                                 "frame must not be after the last.")
            return keys, start, stop, direction
        k = current_frame(self.viewer, labels)
        if not np.asarray(labels.data[k]).any():
            raise InputError(f"frame {k} has no labels: paint the correction on this "
                             "frame first, then re-propagate from it.")
        keys = sorted(set(keys) | {k})
        start, stop = affected_range(keys, k, t_total, settings)   # what k can change
        lo, hi = self.frame_range.span()
        if lo <= k < hi:                   # and stays in the frames the user chose
            start, stop = max(start, lo), min(stop, hi)
        if direction == "forward":
            start = k
        elif direction == "backward":
            stop = k + 1
        if not [t for t in range(start, stop) if t not in keys]:
            raise InputError(f"nothing to re-propagate from frame {k}: the frames next to it "
                             "are keyframes or the ends of the video.")
        unmark_written(labels, [k])      # a keyframe from now on, even if not repainted
        return keys, start, stop, direction

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
        settings = self.settings()
        keys, start, stop, direction = self._frame_range(labels, self.keyframes(),
                                                         from_current, t_total, settings)
        if not keys:
            raise InputError("no keyframes: paint the object on at least one frame of the "
                             f"Labels layer '{labels.name}' (or list painted frames).")
        masks = {k: np.array(labels.data[k], copy=True) for k in keys}
        weights, device = self.weights.value(), self.device.currentText()
        cache, video_key = self.features.get(image, weights, device, settings)
        job = PropagationJob(frames, masks, start, stop, direction, weights, device,
                             settings, cache, video_key)
        self._edit = LabelsEdit(labels, masks, on_refused=self._refuse_paint)
        self._written = 0
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
        self._written += 1
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
        result, job = outcome.value, self.last_job
        if result is not None and outcome.status != "error":
            meta = edit.layer.metadata
            meta[CONFIDENCE_KEY] = merge_confidence(meta.get(CONFIDENCE_KEY),
                                                    result.confidence, job.start, job.stop)
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
