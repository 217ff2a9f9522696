"""The "Track points" dock widget: each point of a Points layer is one track; the core's
``track_points`` runs in a worker thread (``WidgetRun``); the result is a Tracks layer
plus a Points layer with one point per frame (low-confidence points marked), exportable
as CSV."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from napari.layers import Image, Points
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..errors import InputError
from ..model.cache import describe_weights, get_model
from ..tracking import TrackSettings
from ._pickers import LayerCombo, WeightsBox, device_combo
from ._run import Outcome, RunsInBackground, WidgetRun
from ._settings_form import SettingsForm
from .layer_arrays import current_frame, points_input, tracks_layer_data, video_frames

__all__ = ["TrackWidget", "points_input", "VISIBLE_COLOUR", "HIDDEN_COLOUR"]

VISIBLE_COLOUR = "#39ff14"     # confident
HIDDEN_COLOUR = "#ff3b3b"      # low confidence (occluded / lost)


@dataclass
class TrackJob:
    """Everything one run needs, gathered on the GUI thread."""

    frames: object                 # (T, H, W, 3) uint8 array-like
    points: np.ndarray             # (N, 3) t, y, x
    ids: np.ndarray                # (N,) track ids
    source: object                 # the Points layer
    weights: str
    device: str
    settings: TrackSettings


def _track(job: TrackJob, task):
    from ..tracking import track_points
    model = get_model(job.weights, job.device)
    return track_points(model, job.frames, job.points, progress=task.progress,
                        cancel=task.cancel, settings=job.settings)


class TrackWidget(RunsInBackground, QWidget):
    """Dock widget "Track points"."""

    run_finished = Signal(str)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result = None            # (ids, positions (T,N,2), visible (T,N))
        self.tracks_layer = None
        self.points_out_layer = None
        self.last_job: TrackJob | None = None

        self.image_combo = LayerCombo(napari_viewer, Image)
        self.points_combo = LayerCombo(napari_viewer, Points)
        self.weights = WeightsBox(lab=True)
        self.device = device_combo()
        # each group of points has one keyframe (its own frame): max_keyframes does not apply
        self.advanced = SettingsForm(TrackSettings(), skip=("propagation.max_keyframes",))
        self.track_btn = QPushButton("Track")
        self.cancel_btn = QPushButton("Cancel")
        self.export_btn = QPushButton("Export CSV…")
        self.export_btn.setEnabled(False)
        self.status = QLabel("Place points on one frame (one point per track), then Track.")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Video", self.image_combo)
        form.addRow("Points", self.points_combo)
        form.addRow("Features", self.weights)
        form.addRow("Device", self.device)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.advanced)
        lay.addWidget(self.track_btn)
        lay.addWidget(self.cancel_btn)
        lay.addWidget(self.export_btn)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self.runner = WidgetRun(self, what="tracking", title="Tracking points",
                                run_buttons=(self.track_btn,), cancel_button=self.cancel_btn,
                                status=self.status, busy_text="Tracking is already running.",
                                finished=self.run_finished.emit)
        self.track_btn.clicked.connect(self.track)
        self.export_btn.clicked.connect(lambda: self.export_csv())

    def settings(self) -> TrackSettings:
        """The tracking settings of the Advanced section."""
        return self.advanced.settings()

    def cancel(self) -> None:
        self.runner.cancel()

    def track(self) -> None:
        self.runner.start(self._prepare, _track, self._show)

    def _prepare(self) -> TrackJob:
        image = self.image_combo.layer()
        frames = video_frames(image)
        layer = self.points_combo.layer()
        if layer is None:
            raise InputError("no Points layer: add one and place points on a frame "
                             "(one point per track).")
        pts, ids = points_input(layer, current_frame(self.viewer, image))
        weights = self.weights.value()
        job = TrackJob(frames, pts, ids, layer, weights, self.device.currentText(),
                       self.settings())
        self.last_job = job
        self.status.setText(f"Tracking {len(pts)} points with the {describe_weights(weights)}…")
        return job

    def _show(self, outcome: Outcome) -> None:
        if outcome.status == "error":
            return
        job = self.last_job
        pos, vis = outcome.value.positions, outcome.value.visible
        self.result = (job.ids, pos, vis)
        self._show_layers(job.source, job.ids, pos, vis)
        self.export_btn.setEnabled(True)
        n_low = int((~vis & np.isfinite(pos[..., 0])).sum())
        self.status.setText(("Cancelled: partial tracks. " if outcome.status == "cancelled"
                             else "") + f"{len(job.ids)} tracks x {pos.shape[0]} frames; "
                            f"{n_low} low-confidence points (red).")

    def _show_layers(self, src, ids, pos, vis) -> None:
        tracks, points, features = tracks_layer_data(ids, pos, vis)
        colours = list(np.where(features["visible"], VISIBLE_COLOUR, HIDDEN_COLOUR))
        if self.tracks_layer is not None and self.tracks_layer in self.viewer.layers:
            self.tracks_layer.data = tracks
        else:
            self.tracks_layer = self.viewer.add_tracks(tracks, name=f"{src.name} tracks",
                                                       tail_length=8, head_length=0)
        if self.points_out_layer is not None and self.points_out_layer in self.viewer.layers:
            self.points_out_layer.data = points
            self.points_out_layer.features = features
            self.points_out_layer.face_color = colours
        else:
            self.points_out_layer = self.viewer.add_points(
                points, name=f"{src.name} tracked", features=features,
                face_color=colours, border_color="black", size=6)
        self.points_combo.set_layer(src)        # keep tracking from the user's points
        self.viewer.layers.selection.active = src

    def export_csv(self, path=None) -> Path | None:
        """Write ``track_id,t,y,x,visible`` for every track and frame."""
        from ..io import write_tracks_csv
        if self.result is None:
            show_error("nothing to export yet: track points first.")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export tracks",
                                                  str(Path.home() / "tracks.csv"),
                                                  "CSV (*.csv)")
            if not path:
                return None
        ids, pos, vis = self.result
        write_tracks_csv(path, ids, pos, vis)
        show_info(f"wrote {len(ids)} tracks to {path}")
        return Path(path)
