"""The "Propagate labels" dock widget: gathers layers, keyframes and settings, runs the
core's ``propagate_labels`` in a napari worker thread and writes each finished frame
into the Labels layer; the whole run is one undoable edit of that layer."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError
from ._common import (
    LayerCombo,
    Relay,
    WeightsBox,
    current_frame,
    describe_weights,
    device_combo,
    fingerprint,
    get_model,
    run_guarded,
    video_frames,
)

#: layer.metadata key: {frame: set of fingerprints of label frames this widget wrote}
WRITTEN_KEY = "corrflow_propagated"


def detect_keyframes(layer) -> list[int]:
    """Frames the user painted: any non-zero label, unless the frame holds exactly what a
    propagation run wrote there (so propagated frames are not keyframes, but a frame
    the user corrected afterwards is)."""
    written = layer.metadata.get(WRITTEN_KEY, {})
    keys = []
    data = layer.data
    for t in range(data.shape[0]):
        frame = np.asarray(data[t])
        if not frame.any():
            continue
        if t in written and fingerprint(frame) in written[t]:
            continue
        keys.append(t)
    return keys


def parse_keyframes(text: str, n_frames: int) -> list[int]:
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
class _Job:
    frames: object
    keyframes: dict
    start: int
    stop: int
    direction: str
    weights: str
    device: str


def _propagate(job: _Job, relay: Relay, cancel: threading.Event):
    from ..propagation import propagate_labels
    model = get_model(job.weights, job.device)
    propagate_labels(model, job.frames, job.keyframes,
                     progress=lambda done, total: relay.progress.emit(done, total, None),
                     cancel=cancel, start=job.start, stop=job.stop, direction=job.direction,
                     on_frame=lambda t, lab: relay.frame.emit(int(t), lab))
    return "cancelled" if cancel.is_set() else "done"


class PropagateWidget(QWidget):
    """Dock widget "Propagate labels"."""

    #: emitted in the GUI thread after frame t was written into the Labels layer
    frame_written = Signal(int)
    #: emitted when a run ends: "done", "cancelled" or "error"
    run_finished = Signal(str)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self._cancel = threading.Event()
        self._run = None
        self.last_weights: str | None = None     # weights used by the last run
        self.last_status: str | None = None

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
        self.start_spin, self.end_spin = QSpinBox(), QSpinBox()
        self.weights = WeightsBox(lab=True)
        self.device = device_combo()
        self.propagate_btn = QPushButton("Propagate")
        self.repropagate_btn = QPushButton("Re-propagate from current frame")
        self.repropagate_btn.setToolTip(
            "The frame shown becomes a keyframe; frames after it, up to the next keyframe, "
            "are recomputed.")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
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
        rrow = QHBoxLayout()
        rrow.addWidget(self.start_spin)
        rrow.addWidget(QLabel("to"))
        rrow.addWidget(self.end_spin)
        form.addRow("Frames", rrow)
        form.addRow("Features", self.weights)
        form.addRow("Device", self.device)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.propagate_btn)
        lay.addWidget(self.repropagate_btn)
        lay.addWidget(self.cancel_btn)
        lay.addWidget(self.status)
        lay.addStretch(1)

        self._detect_timer = QTimer(self)
        self._detect_timer.setSingleShot(True)
        self._detect_timer.setInterval(250)
        self._detect_timer.timeout.connect(self.refresh_keyframes)
        self._watched = None

        self.propagate_btn.clicked.connect(self.propagate)
        self.repropagate_btn.clicked.connect(self.repropagate_from_current)
        self.cancel_btn.clicked.connect(self.cancel)
        self.detect_btn.clicked.connect(self.refresh_keyframes)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.labels_combo.currentIndexChanged.connect(self._on_labels_changed)
        self._on_image_changed()
        self._on_labels_changed()

    # ------------------------------------------------------------------ layer tracking
    def _n_frames(self) -> int:
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        layer = image if image is not None else labels
        return int(layer.data.shape[0]) if layer is not None and layer.data.ndim >= 3 else 1

    def _on_image_changed(self, *_):
        n = self._n_frames()
        for s in (self.start_spin, self.end_spin):
            s.setRange(0, max(0, n - 1))
        self.start_spin.setValue(0)
        self.end_spin.setValue(max(0, n - 1))

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
        if self._run is not None and self._run.get("committing"):
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

    @property
    def running(self) -> bool:
        return self._worker is not None

    # ------------------------------------------------------------------ actions
    def propagate(self) -> None:
        """Propagate the keyframes over the chosen frame range and direction."""
        self._start(from_current=False)

    def repropagate_from_current(self) -> None:
        """The current frame becomes a keyframe; recompute the frames after it up to the
        next keyframe."""
        self._start(from_current=True)

    def cancel(self) -> None:
        self._cancel.set()
        if self._worker is not None:
            self.status.setText("Cancelling… (stops after the current frame)")

    def _prepare(self, from_current: bool) -> tuple[_Job, Labels]:
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
        keys = self.keyframes()
        if from_current:
            k = current_frame(self.viewer, labels)
            if not np.asarray(labels.data[k]).any():
                raise InputError(f"frame {k} has no labels: paint the correction on this "
                                 "frame first, then re-propagate from it.")
            keys = sorted(set(keys) | {k})
            later = [j for j in keys if j > k]
            start, stop, direction = k, (later[0] if later else t_total), "forward"
            if stop <= k + 1:
                raise InputError(f"nothing to re-propagate after frame {k}: the next frame "
                                 "is a keyframe or the end of the video.")
        else:
            start, stop = self.start_spin.value(), self.end_spin.value() + 1
            if stop <= start:
                raise InputError(f"frame range {start} to {stop - 1} is empty; the first "
                                 "frame must not be after the last.")
            direction = self.direction.currentText()
        if not keys:
            raise InputError("no keyframes: paint the object on at least one frame of the "
                             f"Labels layer '{labels.name}' (or list painted frames).")
        masks = {k: np.array(labels.data[k], copy=True) for k in keys}
        job = _Job(frames, masks, start, stop, direction, self.weights.value(),
                   self.device.currentText())
        return job, labels

    def _start(self, from_current: bool) -> None:
        if self._worker is not None:
            show_info("Propagation is already running; cancel it first.")
            return
        try:
            job, labels = self._prepare(from_current)
        except InputError as exc:
            show_error(str(exc))
            self.status.setText(str(exc))
            return
        self._cancel = threading.Event()
        self.destroyed.connect(self._cancel.set)    # widget closed: stop the worker
        self._run = {"layer": labels, "keys": set(job.keyframes), "atoms": [],
                     "hashes": {}, "mode": labels.mode, "editable": labels.editable,
                     "done": 0, "weights": job.weights, "committing": False}
        labels.editable = False                     # no painting while frames are written
        self._pbar = progress(total=0, desc="Propagating labels")
        relay = Relay(self)
        relay.frame.connect(self._on_frame)
        relay.progress.connect(self._on_progress)
        self._relay = relay
        self.last_weights = job.weights
        what = "re-propagation" if from_current else "propagation"
        self.status.setText(f"Propagating frames {job.start}..{job.stop - 1} "
                            f"({job.direction}) with the {describe_weights(job.weights)}…")
        worker = create_worker(run_guarded, _propagate, job, relay, self._cancel, what=what,
                               _start_thread=False)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_worker_finished)
        self._worker = worker
        self._set_busy(True)
        worker.start()

    def _set_busy(self, busy: bool) -> None:
        self.propagate_btn.setEnabled(not busy)
        self.repropagate_btn.setEnabled(not busy)
        self.cancel_btn.setEnabled(busy)

    # ------------------------------------------------------------------ GUI-thread slots
    def _on_progress(self, done, total, _unused=None):
        pbar = getattr(self, "_pbar", None)
        if pbar is None:
            return
        if pbar.total != total:
            pbar.total = total
        pbar.update(int(done) - pbar.n)

    def _on_frame(self, t: int, lab) -> None:
        run = self._run
        if run is None or t in run["keys"]:   # keyframes are never overwritten
            return
        layer = run["layer"]
        new = np.asarray(lab).astype(layer.data.dtype, copy=False)
        old = np.array(layer.data[t], copy=True)
        layer.data[t] = new
        run["atoms"].append(((t,), old, new))
        run["hashes"][t] = fingerprint(new)
        run["done"] += 1
        try:
            if current_frame(self.viewer, layer) == t:
                layer.refresh()
        except Exception:   # pragma: no cover - display only
            pass
        self.frame_written.emit(t)

    def _on_returned(self, result) -> None:
        status, msg = result
        run, self._run = self._run, None
        if run is None:
            return
        layer = run["layer"]
        self._commit(layer, run)
        layer.editable = run["editable"]
        try:
            layer.mode = run["mode"]
        except Exception:   # pragma: no cover
            pass
        layer.refresh()
        if getattr(self, "_pbar", None) is not None:
            self._pbar.close()
            self._pbar = None
        n = run["done"]
        if status == "error":
            self.last_status = "error"
            extra = f" ({n} frames were written; Ctrl+Z undoes them)" if n else ""
            show_error(msg + extra)
            self.status.setText(msg)
        elif msg == "cancelled":
            self.last_status = "cancelled"
            text = f"Cancelled: {n} frames written (Ctrl+Z on the Labels layer undoes the run)."
            show_info(text)
            self.status.setText(text)
        else:
            self.last_status = "done"
            self.status.setText(f"Propagated {n} frames with the "
                                f"{describe_weights(run['weights'])} (Ctrl+Z undoes).")
        self.refresh_keyframes()
        self.run_finished.emit(self.last_status)

    def _commit(self, layer, run) -> None:
        """Record the whole run as ONE undo step of the Labels layer."""
        written = layer.metadata.setdefault(WRITTEN_KEY, {})
        for t, h in run["hashes"].items():
            written.setdefault(t, set()).add(h)
        if not run["atoms"]:
            return
        run["committing"] = True
        self._run = run
        try:
            with layer.block_history():
                for atom in run["atoms"]:
                    layer._save_history(atom)
        finally:
            run["committing"] = False
            self._run = None

    def _on_worker_finished(self) -> None:
        self._worker = None
        self._set_busy(False)
