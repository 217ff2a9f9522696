"""The Track points widget with a real viewer, the real core and the Lab baseline."""
from dataclasses import replace

import numpy as np

from corrflow_napari import tracking
from corrflow_napari.model.cache import LAB
from corrflow_napari.tracking import TrackSettings
from corrflow_napari.widgets import TrackWidget

from .helpers import wait_done


def track_widget(viewer, small_clip):
    frames, _ = small_clip
    viewer.add_image(frames, rgb=True, name="clip")
    pts = viewer.add_points(np.array([[0, 40, 60], [0, 50, 70], [0, 20, 120]], float),
                            name="pts", features={"track_id": [5, 7, 9]})
    w = TrackWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.weights.set_value(LAB)
    w.device.setCurrentText("cpu")
    w.points_combo.set_layer(pts)
    return w, pts


def test_track_points_widget_makes_tracks_layer_and_csv(make_napari_viewer, qtbot,
                                                       small_clip, tmp_path):
    viewer = make_napari_viewer()
    w, pts = track_widget(viewer, small_clip)
    n_frames = len(small_clip[0])
    w.track_btn.click()
    assert not w.track_btn.isEnabled() and w.cancel_btn.isEnabled()
    wait_done(qtbot, w)
    assert w.last_status == "done"
    assert w.track_btn.isEnabled() and not w.cancel_btn.isEnabled()
    tracks = [ly for ly in viewer.layers if ly._type_string == "tracks"]
    assert len(tracks) == 1
    assert tracks[0].data.shape == (3 * n_frames, 4)
    assert set(np.unique(tracks[0].data[:, 0]).astype(int)) == {5, 7, 9}
    per_frame = w.points_out_layer
    assert per_frame.data.shape == (3 * n_frames, 3)
    assert "visible" in per_frame.features.columns
    assert w.points_combo.layer() is pts          # the input stays selected for a re-run
    out = w.export_csv(tmp_path / "tracks.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "track_id,t,y,x,visible" and len(lines) == 1 + 3 * n_frames


def test_track_advanced_settings_reach_the_core(make_napari_viewer, qtbot, small_clip,
                                                monkeypatch):
    viewer = make_napari_viewer()
    w, _ = track_widget(viewer, small_clip)
    assert not w.advanced.expanded
    seen = []
    core = tracking.track_points

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return core(*args, **kwargs)

    monkeypatch.setattr(tracking, "track_points", spy)
    assert w.settings() == TrackSettings()                     # the CLI's defaults
    w.advanced.set_value("propagation.n_recent", 5)            # the engine's settings
    w.advanced.set_value("visible_threshold", 0.25)            # tracking's own
    w.track()
    wait_done(qtbot, w)
    assert w.last_status == "done", w.status.text()
    expected = TrackSettings(propagation=replace(TrackSettings().propagation, n_recent=5),
                             visible_threshold=0.25)
    assert [kw["settings"] for kw in seen] == [expected]
    assert w.last_job.settings == expected
