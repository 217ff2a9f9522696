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
    w.advanced.set_value("visible_threshold", 0.9)     # some points become low-confidence
    w.track_btn.click()
    assert not w.track_btn.isEnabled() and w.cancel_btn.isEnabled()
    wait_done(qtbot, w)
    assert w.last_status == "done"
    assert w.track_btn.isEnabled() and not w.cancel_btn.isEnabled()
    tracks = [ly for ly in viewer.layers if ly._type_string == "tracks"]
    assert len(tracks) == 1
    ids, pos, vis = w.result
    n_shown = int(np.isfinite(pos[..., 0]).sum())     # lost points are not drawn
    assert tracks[0].data.shape == (n_shown, 4)
    assert set(tracks[0].features["track"]) == {5, 7, 9}
    per_frame = w.points_out_layer
    assert per_frame.data.shape == (n_shown, 3)
    # confidence by colour: confident points green, low-confidence ones red
    colours = per_frame.face_color[:, :3]
    confident = np.asarray(per_frame.features["visible"])
    assert confident.any() and not confident.all()
    expected = np.where(confident[:, None], [57 / 255, 1, 20 / 255], [1, 32 / 255, 32 / 255])
    np.testing.assert_allclose(colours, expected)
    assert w.progress.text().startswith(f"{n_frames - 1} frames in ")   # one group
    assert w.points_combo.layer() is pts          # the input stays selected for a re-run
    out = w.export_csv(tmp_path / "tracks.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "track_id,t,y,x,visible" and len(lines) == 1 + 3 * n_frames


def test_track_advanced_settings_reach_the_core(make_napari_viewer, qtbot, small_clip,
                                                monkeypatch):
    viewer = make_napari_viewer()
    w, _ = track_widget(viewer, small_clip)
    assert not w.advanced.expanded
    # the options of mask keyframes do not apply to points: no editor for them
    assert "propagation.n_recent" in w.advanced.editors
    mask_only = {"propagation.fusion", "propagation.max_keyframes", "propagation.follow"}
    assert not mask_only & set(w.advanced.editors)
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


def test_retrack_from_current_frame_after_moving_a_point(make_napari_viewer, qtbot,
                                                        small_clip, lab):
    """Drag a tracked point on frame 6, Re-track: it becomes a keyframe of its track in the
    user's Points layer; only that track's frames from 6 on change, exactly as the core
    tracks them from that keyframe; the other tracks and earlier frames stay."""
    viewer = make_napari_viewer()
    w, pts = track_widget(viewer, small_clip)
    w.track()
    wait_done(qtbot, w)
    ids, before, before_vis = w.result
    k, col = 6, 1                                    # track 7
    out = w.points_out_layer
    data = out.data.copy()
    row = np.flatnonzero((data[:, 0] == k) & (out.features["track_id"] == 7))[0]
    data[row, 2] += 12.0                             # the user drags it 12 px right
    out.data = data
    viewer.dims.set_current_step(0, k)
    w.retrack_btn.click()
    wait_done(qtbot, w)
    assert w.last_status == "done", w.status.text()
    keys = pts.data[np.asarray(pts.features["track_id"]) == 7]
    np.testing.assert_allclose(keys, [[0, 50, 70], data[row]])   # a keyframe was added
    ids_after, after, _ = w.result
    np.testing.assert_array_equal(ids_after, ids)
    np.testing.assert_array_equal(after[:k], before[:k])            # earlier frames kept
    np.testing.assert_array_equal(after[:, [0, 2]], before[:, [0, 2]])   # other tracks
    np.testing.assert_allclose(after[k, col], data[row, 1:])
    core = tracking.track_points(lab, small_clip[0], keys, track_ids=[7, 7])
    np.testing.assert_array_equal(after[k:, col], core.positions[k:, 0])
    assert not np.array_equal(after[k + 1:, col], before[k + 1:, col])
    w.retrack_btn.click()                            # nothing moved now: a clear message
    assert "no point was moved on frame 6" in w.status.text()
