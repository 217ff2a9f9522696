"""The "Track points" dock widget: each track is one point of a Points layer (or several:
its keyframes, same ``track_id`` on other frames); the core's ``track_points`` runs in a
worker thread (``WidgetRun``, with "frame 31/96, 0.8 s/frame, 52 s left"); the result is
a Tracks layer plus a Points layer with one point per frame, coloured by confidence (lost
points are not drawn), exportable as CSV. Dragging a point of that layer on a later frame
and "Re-track from current frame" makes it a keyframe and recomputes only that track's
frames up to its next keyframe."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from napari.layers import Image, Points
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from ..errors import InputError
from ..model.cache import describe_weights, get_model
from ..tracking import MASK_ONLY_OPTIONS, TrackSettings
from ._dock import compact_body, hbox
from ._pickers import LayerCombo, WeightsBox, device_combo
from ._run import Outcome, RunsInBackground, WidgetRun
from ._settings_form import SettingsForm
from .layer_arrays import current_frame, points_input, tracks_layer_data, video_frames
from .track_keyframes import add_keyframes, keyframe_spans, merge_spans, moved_points

__all__ = ["TrackWidget", "points_input", "VISIBLE_COLOUR", "HIDDEN_COLOUR"]

VISIBLE_COLOUR = "#39ff14"     # confident
HIDDEN_COLOUR = "#ff2020"      # low confidence (occluded / unsure)


@dataclass
class TrackJob:
    """Everything one run needs, gathered on the GUI thread."""

    frames: object                 # (T, H, W, 3) uint8 array-like
    points: np.ndarray             # (N, 3) t, y, x: every keyframe of the tracks
    ids: np.ndarray                # (N,) track id of each point
    source: object                 # the Points layer
    weights: str
    device: str
    settings: TrackSettings
    start: int = 0                 # frames computed: [start, stop)
    stop: int | None = None
    spans: dict | None = None      # re-track: {track id: (lo, hi)} frames replaced


def _track(job: TrackJob, task):
    from ..tracking import track_points
    model = get_model(job.weights, job.device)
    return track_points(model, job.frames, job.points, progress=task.progress,
                        cancel=task.cancel, settings=job.settings, track_ids=job.ids,
                        start=job.start, stop=job.stop)


def point_size(shape) -> float:
    """Marker size (data pixels) that reads at any frame size: 1/40 of the short side."""
    return max(4.0, min(int(shape[1]), int(shape[2])) / 40)


class TrackWidget(RunsInBackground, QWidget):
    """Dock widget "Track points"."""

    run_finished = Signal(str)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result = None            # (ids (K,), positions (T,K,2), visible (T,K))
        self.tracks_layer = None
        self.points_out_layer = None
        self.last_job: TrackJob | None = None

        self.image_combo = LayerCombo(napari_viewer, Image)
        self.points_combo = LayerCombo(napari_viewer, Points)
        self.weights = WeightsBox(lab=True)
        self.device = device_combo()
        # each group of points has one keyframe (its own frame): the keyframe options
        # of masks (how many references, how two sides are fused) do not apply
        self.advanced = SettingsForm(TrackSettings(), skip=tuple(
            f"propagation.{name}" for name in MASK_ONLY_OPTIONS))
        self.advanced.body.layout().insertRow(0, "device", self.device)
        self.track_btn = QPushButton("Track")
        self.retrack_btn = QPushButton("Re-track from here")
        self.retrack_btn.setToolTip(
            "Re-track from the current frame: drag wrong points of the tracked layer on the "
            "frame shown, then re-track; they become keyframes, and each of their tracks is "
            "recomputed up to its next keyframe.")
        self.cancel_btn = QPushButton("Cancel")
        self.export_btn = QPushButton("Export CSV…")
        self.export_btn.setEnabled(False)
        self.progress = QLabel("")
        self.status = QLabel("Place points on a frame (one per track), then Track.")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Video", self.image_combo)
        form.addRow("Points", self.points_combo)
        form.addRow("Features", self.weights)
        lay = compact_body(self)
        lay.addLayout(form)
        lay.addWidget(self.advanced)
        lay.addLayout(hbox(self.track_btn, self.retrack_btn))
        lay.addLayout(hbox(self.cancel_btn, self.export_btn))
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self.runner = WidgetRun(self, what="tracking", title="Tracking points",
                                run_buttons=(self.track_btn, self.retrack_btn),
                                cancel_button=self.cancel_btn, status=self.status,
                                busy_text="Tracking is already running.",
                                progress_label=self.progress,
                                finished=self.run_finished.emit)
        self.track_btn.clicked.connect(self.track)
        self.retrack_btn.clicked.connect(self.retrack_from_current)
        self.export_btn.clicked.connect(lambda: self.export_csv())

    def settings(self) -> TrackSettings:
        """The tracking settings of the Advanced section."""
        return self.advanced.settings()

    def cancel(self) -> None:
        self.runner.cancel()

    def track(self) -> None:
        """Track every track of the Points layer from all its keyframes."""
        self.runner.start(self._prepare, _track, self._show)

    def retrack_from_current(self) -> None:
        """The tracked points moved on the frame shown become keyframes; their tracks are
        recomputed from there up to their next keyframes."""
        self.runner.start(self._prepare_retrack, _track, self._show, what="re-tracking")

    def _job(self, layer, **kw) -> TrackJob:
        image = self.image_combo.layer()
        frames = video_frames(image)
        pts, ids = points_input(layer, current_frame(self.viewer, image))
        job = TrackJob(frames, pts, ids, layer, self.weights.value(),
                       self.device.currentText(), self.settings(), **kw)
        self.last_job = job
        return job

    def _prepare(self) -> TrackJob:
        layer = self.points_combo.layer()
        if layer is None:
            raise InputError("no Points layer: add one and place points on a frame "
                             "(one point per track).")
        job = self._job(layer)
        self.status.setText(f"Tracking {len(set(job.ids.tolist()))} tracks with the "
                            f"{describe_weights(job.weights)}…")
        return job

    def _prepare_retrack(self) -> TrackJob:
        out, src = self.points_out_layer, self.last_job and self.last_job.source
        if self.result is None or out is None or out not in self.viewer.layers \
                or src not in self.viewer.layers:
            raise InputError("nothing to re-track yet: track points first, then drag a "
                             "wrong point of the tracked layer on a later frame.")
        ids, pos, _ = self.result
        t = current_frame(self.viewer, out)
        moved = moved_points(out, t, ids, pos)
        if not moved:
            raise InputError(f"no point was moved on frame {t}: drag the wrong points of "
                             f"'{out.name}' to where they belong on this frame, then "
                             "re-track.")
        add_keyframes(src, t, moved)
        job = self._job(src, start=t)
        keep = np.isin(job.ids, list(moved))
        job.points, job.ids = job.points[keep], job.ids[keep]
        job.spans = keyframe_spans(job.ids, job.points[:, 0].astype(int), moved, t,
                                   pos.shape[0])
        job.stop = max(hi for _, hi in job.spans.values())
        self.status.setText(f"Re-tracking {len(moved)} track(s) from frame {t}…")
        return job

    def _show(self, outcome: Outcome) -> None:
        if outcome.status == "error":
            return
        job = self.last_job
        pos, vis = outcome.value.positions, outcome.value.visible
        order = np.array(list(dict.fromkeys(job.ids.tolist())))
        if job.spans is not None and outcome.status == "cancelled":
            self.status.setText("Re-tracking cancelled: the tracks are unchanged (the moved "
                                "points are kept as keyframes of the Points layer).")
            return
        if job.spans is not None:                       # a re-track: merge its frames
            ids, old_pos, old_vis = self.result
            pos, vis = merge_spans(old_pos, old_vis, ids, pos, vis, order, job.spans)
            order = ids
        self.result = (order, pos, vis)
        self._show_layers(job.source, order, pos, vis)
        self.export_btn.setEnabled(True)
        n_low = int((~vis & np.isfinite(pos[..., 0])).sum())
        n_lost = int((~np.isfinite(pos[..., 0])).sum())
        self.status.setText(("Cancelled: partial tracks. " if outcome.status == "cancelled"
                             else "") + f"{len(order)} tracks x {pos.shape[0]} frames: "
                            f"{n_low} low-confidence points (red), {n_lost} lost (hidden).")

    def _show_layers(self, src, ids, pos, vis) -> None:
        tracks, points, features = tracks_layer_data(ids, pos, vis)
        colours = np.where(features["visible"], VISIBLE_COLOUR, HIDDEN_COLOUR)
        size = point_size(self.last_job.frames.shape)
        if self.tracks_layer is not None and self.tracks_layer in self.viewer.layers:
            layer = self.tracks_layer
            layer.color_by = "track_id"             # new rows: the old features go
            layer.data = tracks
            layer.features = {"track": features["track_id"]}
            layer.color_by = "track"
        else:
            self.tracks_layer = self.viewer.add_tracks(
                tracks, features={"track": features["track_id"]}, color_by="track",
                name=f"{src.name} tracks", tail_length=8, head_length=0, tail_width=3)
        if self.points_out_layer is not None and self.points_out_layer in self.viewer.layers:
            self.points_out_layer.data = points
            self.points_out_layer.features = features
            self.points_out_layer.face_color = list(colours)
            self.points_out_layer.size = size
        else:
            self.points_out_layer = self.viewer.add_points(
                points, name=f"{src.name} tracked", features=features,
                face_color=list(colours), border_color="white", border_width=0.15,
                size=size)
        self.points_combo.set_layer(src)        # keep tracking from the user's points
        self.viewer.layers.selection.active = src

    def export_csv(self, path=None) -> Path | None:
        """Write ``track_id,t,y,x,visible`` for every track and frame (lost: nan)."""
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
