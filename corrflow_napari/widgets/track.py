"""The "Track points" dock widget: each point of a Points layer is one track; the core's
``track_points`` runs in a worker thread; the result is a Tracks layer plus a Points
layer with one point per frame (low-confidence points marked), exportable as CSV."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from napari.layers import Image, Points
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..errors import InputError
from ._common import (
    LayerCombo,
    Relay,
    WeightsBox,
    current_frame,
    describe_weights,
    device_combo,
    get_model,
    run_guarded,
    video_frames,
)

VISIBLE_COLOUR = "#39ff14"     # confident
HIDDEN_COLOUR = "#ff3b3b"      # low confidence (occluded / lost)


def points_input(layer, t_now: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) t, y, x rows and the N track ids of a Points layer."""
    data = np.asarray(layer.data, dtype=np.float64)
    if len(data) == 0:
        raise InputError(f"Points layer '{layer.name}' is empty: place points on a frame "
                         "(one point per track).")
    if data.shape[1] == 2:
        pts = np.column_stack([np.full(len(data), t_now, float), data])
    else:
        pts = data[:, -3:].copy()
        pts[:, 0] = np.round(pts[:, 0])
    ids = np.arange(len(pts))
    feats = getattr(layer, "features", None)
    if feats is not None and "track_id" in feats.columns:
        col = np.asarray(feats["track_id"])
        try:
            ids = col.astype(np.int64)
        except (TypeError, ValueError):
            raise InputError("the Points layer's 'track_id' feature must hold whole "
                             "numbers.") from None
        if len(set(ids.tolist())) != len(ids):
            raise InputError("two points share a track_id; give every point its own "
                             "track_id (one point per track).")
    return pts, ids


def _track(frames, pts, weights, device, relay: Relay, cancel: threading.Event):
    from ..propagation import track_points
    model = get_model(weights, device)
    return track_points(model, frames, pts,
                        progress=lambda d, t: relay.progress.emit(d, t, None), cancel=cancel)


class TrackWidget(QWidget):
    """Dock widget "Track points"."""

    run_finished = Signal(str)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self._cancel = threading.Event()
        self.result = None            # (ids, positions (T,N,2), visible (T,N))
        self.tracks_layer = None
        self.points_out_layer = None
        self.last_status: str | None = None

        self.image_combo = LayerCombo(napari_viewer, Image)
        self.points_combo = LayerCombo(napari_viewer, Points)
        self.weights = WeightsBox(lab=True)
        self.device = device_combo()
        self.track_btn = QPushButton("Track")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
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
        lay.addWidget(self.track_btn)
        lay.addWidget(self.cancel_btn)
        lay.addWidget(self.export_btn)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self.track_btn.clicked.connect(self.track)
        self.cancel_btn.clicked.connect(self.cancel)
        self.export_btn.clicked.connect(lambda: self.export_csv())

    @property
    def running(self) -> bool:
        return self._worker is not None

    def cancel(self) -> None:
        self._cancel.set()

    def track(self) -> None:
        if self._worker is not None:
            show_info("Tracking is already running.")
            return
        try:
            frames = video_frames(self.image_combo.layer())
            layer = self.points_combo.layer()
            if layer is None:
                raise InputError("no Points layer: add one and place points on a frame "
                                 "(one point per track).")
            t_now = current_frame(self.viewer, self.image_combo.layer())
            pts, ids = points_input(layer, t_now)
        except InputError as exc:
            show_error(str(exc))
            self.status.setText(str(exc))
            return
        self._cancel = threading.Event()
        self.destroyed.connect(self._cancel.set)    # widget closed: stop the worker
        self._ids, self._src = ids, layer
        self._pbar = progress(total=0, desc="Tracking points")
        relay = Relay(self)
        relay.progress.connect(self._on_progress)
        self._relay = relay
        weights = self.weights.value()
        self.status.setText(f"Tracking {len(pts)} points with the {describe_weights(weights)}…")
        worker = create_worker(run_guarded, _track, frames, pts, weights,
                               self.device.currentText(), relay, self._cancel,
                               what="tracking", _start_thread=False)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.track_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        worker.start()

    def _on_progress(self, done, total, _=None):
        if self._pbar is None:
            return
        if self._pbar.total != total:
            self._pbar.total = total
        self._pbar.update(int(done) - self._pbar.n)

    def _on_returned(self, result) -> None:
        status, value = result
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        if status == "error":
            self.last_status = "error"
            show_error(value)
            self.status.setText(value)
            self.run_finished.emit("error")
            return
        ids = self._ids
        pos, vis = value.positions, value.visible
        self.result = (ids, pos, vis)
        self._show(self._src, ids, pos, vis)
        self.export_btn.setEnabled(True)
        cancelled = self._cancel.is_set()
        self.last_status = "cancelled" if cancelled else "done"
        n_low = int((~vis & np.isfinite(pos[..., 0])).sum())
        self.status.setText(("Cancelled: partial tracks. " if cancelled else "")
                            + f"{len(ids)} tracks x {pos.shape[0]} frames; "
                            f"{n_low} low-confidence points (red).")
        self.run_finished.emit(self.last_status)

    def _on_finished(self) -> None:
        self._worker = None
        self.track_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def _show(self, src, ids, pos, vis) -> None:
        t_total, n = vis.shape
        tt, ii = np.meshgrid(np.arange(t_total), np.arange(n), indexing="ij")
        ok = np.isfinite(pos[..., 0])
        order = np.lexsort((tt[ok], ids[ii[ok]]))          # by track id, then time
        tid = ids[ii[ok]][order]
        t = tt[ok][order]
        yx = pos[ok][order]
        v = vis[ok][order]
        tracks = np.column_stack([tid, t, yx]).astype(np.float64)
        points = np.column_stack([t, yx])
        colours = np.where(v[:, None], np.array([VISIBLE_COLOUR]), np.array([HIDDEN_COLOUR]))[:, 0]
        features = {"track_id": tid.astype(int), "visible": v.astype(bool)}
        name = f"{src.name} tracks"
        if self.tracks_layer is not None and self.tracks_layer in self.viewer.layers:
            self.tracks_layer.data = tracks
        else:
            self.tracks_layer = self.viewer.add_tracks(tracks, name=name, tail_length=8,
                                                       head_length=0)
        if self.points_out_layer is not None and self.points_out_layer in self.viewer.layers:
            self.points_out_layer.data = points
            self.points_out_layer.features = features
            self.points_out_layer.face_color = list(colours)
        else:
            self.points_out_layer = self.viewer.add_points(
                points, name=f"{src.name} tracked", features=features,
                face_color=list(colours), border_color="black", size=6)
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
