"""The napari widgets with a real viewer (pytest-qt + napari's make_napari_viewer under
pytest-xvfb), the real core and the Lab-colour baseline (fast on CPU)."""
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from corrflow_napari.model import load_model
from corrflow_napari.propagation import propagate_labels
from corrflow_napari.widgets import FinetuneWidget, PropagateWidget, TrackWidget, _common

WAIT_MS = 90_000


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The CI machines are small and shared: one intra-op thread is several times faster
    than oversubscribed cores (measured 5 s vs 21 s for the fine-tune test's work)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def reference(small_clip):
    """What the core gives for the small clip from the frame-0 mask (forward)."""
    frames, mask = small_clip
    return propagate_labels(load_model("lab", device="cpu"), frames, {0: mask})


def add_clip(viewer, small_clip):
    frames, mask = small_clip
    image = viewer.add_image(frames, rgb=True, name="clip")
    data = np.zeros(frames.shape[:3], np.uint8)
    data[0] = mask
    labels = viewer.add_labels(data, name="labels")
    return image, labels


def propagate_widget(viewer, qtbot):
    w = PropagateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Propagate labels")
    w.weights.set_value(_common.LAB)
    w.device.setCurrentText("cpu")
    return w


def wait_done(qtbot, w):
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT_MS)


def error_messages(start):
    from napari.utils.notifications import NotificationSeverity, notification_manager
    return [str(n.message) for n in notification_manager.records[start:]
            if n.severity == NotificationSeverity.ERROR]


def n_records():
    from napari.utils.notifications import notification_manager
    return len(notification_manager.records)


def test_sample_opens_image_and_painted_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("corrflow-napari", "bigbuckbunny")
    image = next(ly for ly in layers if ly._type_string == "image")
    labels = next(ly for ly in layers if ly._type_string == "labels")
    assert image.rgb and image.data.shape == (48, 180, 320, 3)
    assert labels.data.shape == (48, 180, 320)
    assert labels.data[0].any() and not labels.data[1:].any()


def test_propagate_fills_every_frame_and_one_undo_restores(make_napari_viewer, qtbot,
                                                          small_clip, reference):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    w = propagate_widget(viewer, qtbot)
    assert w.keyframes() == [0]
    before = labels.data.copy()
    written = []
    w.frame_written.connect(written.append)
    w.propagate_btn.click()
    assert w.running
    wait_done(qtbot, w)
    assert w.last_status == "done"
    assert written == list(range(1, len(before)))              # frame by frame, in order
    assert all(labels.data[t].any() for t in range(len(before)))
    np.testing.assert_array_equal(labels.data, reference)     # exactly the core's result
    np.testing.assert_array_equal(labels.data[0], before[0])  # keyframe untouched
    assert w.refresh_keyframes() == [0]     # propagated frames are not taken as keyframes
    labels.undo()                                              # ONE undo = the whole run
    np.testing.assert_array_equal(labels.data, before)
    labels.redo()
    np.testing.assert_array_equal(labels.data, reference)


def test_repropagate_from_current_frame_leaves_earlier_frames(make_napari_viewer, qtbot,
                                                              small_clip):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    w = propagate_widget(viewer, qtbot)
    w.propagate()
    wait_done(qtbot, w)
    k = 6
    # the user corrects frame k: the bunny's lower half becomes object 2 (a history edit)
    yy, xx = np.nonzero(labels.data[k][45:] == 1)
    labels.data_setitem((np.full(yy.size, k), yy + 45, xx), 2)
    qtbot.waitUntil(lambda: w.keyframes() == [0, k], timeout=5000)   # detected
    before = labels.data.copy()
    viewer.dims.set_current_step(0, k)
    w.repropagate_btn.click()
    wait_done(qtbot, w)
    assert w.last_status == "done"
    np.testing.assert_array_equal(labels.data[:k + 1], before[:k + 1])   # < k and k itself
    expected = propagate_labels(load_model("lab", device="cpu"), small_clip[0],
                                {0: before[0], k: before[k]}, start=k, direction="forward")
    np.testing.assert_array_equal(labels.data[k + 1:], expected[k + 1:])  # recomputed
    assert not np.array_equal(labels.data[k + 1:], before[k + 1:])
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)


def test_cancel_keeps_finished_frames_consistent_and_undoable(make_napari_viewer, qtbot,
                                                             small_clip, reference):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    labels.data[1:, 40:60, 10:50] = 3                 # earlier content of later frames
    before = labels.data.copy()
    w = propagate_widget(viewer, qtbot)
    w.keyframes_edit.setText("0")
    w.frame_written.connect(lambda t: w.cancel() if t == 3 else None)
    w.propagate()
    wait_done(qtbot, w)
    assert w.last_status == "cancelled"
    changed = [t for t in range(len(before)) if not np.array_equal(labels.data[t], before[t])]
    assert changed and changed[0] == 1 and len(changed) < len(before) - 2
    assert changed == list(range(1, len(changed) + 1))        # finished frames, in order
    for t in range(len(before)):       # every frame is entirely from the run or unchanged
        assert (np.array_equal(labels.data[t], reference[t])
                or np.array_equal(labels.data[t], before[t])), t
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)
    assert labels.editable                                    # painting enabled again


def test_ui_stays_responsive_while_propagating(make_napari_viewer, qtbot, small_clip):
    viewer = make_napari_viewer()
    add_clip(viewer, small_clip)
    w = propagate_widget(viewer, qtbot)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    seen = []
    w.frame_written.connect(lambda t: seen.append(len(ticks)))
    timer.start(2)
    try:
        w.propagate()
        wait_done(qtbot, w)
    finally:
        timer.stop()
    assert w.last_status == "done"
    # the event loop kept running between the first and the last frame of the run (a
    # blocked GUI thread would see no 2 ms tick at all between them)
    assert seen[-1] - seen[0] >= 5, seen


def test_input_errors_are_notifications_and_leave_layer(make_napari_viewer, qtbot,
                                                         small_clip):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    w = propagate_widget(viewer, qtbot)
    before = labels.data.copy()
    # caught in the GUI thread: a keyframe outside the video
    start = n_records()
    w.keyframes_edit.setText("0, 99")
    w.propagate()
    assert not w.running
    assert any("out of range" in m for m in error_messages(start))
    # raised by the core in the worker: the listed keyframe has no object painted
    start = n_records()
    w.keyframes_edit.setText("5")
    w.propagate()
    wait_done(qtbot, w)
    assert w.last_status == "error"
    assert any("no object" in m for m in error_messages(start))
    np.testing.assert_array_equal(labels.data, before)
    # a Labels layer that does not match the video
    start = n_records()
    w.labels_combo.set_layer(viewer.add_labels(np.zeros((3, 8, 8), np.uint8), name="bad"))
    w.propagate()
    assert any("shape" in m for m in error_messages(start))


def test_track_points_widget_makes_tracks_layer_and_csv(make_napari_viewer, qtbot,
                                                       small_clip, tmp_path):
    viewer = make_napari_viewer()
    frames, _ = small_clip
    viewer.add_image(frames, rgb=True, name="clip")
    pts = viewer.add_points(np.array([[0, 40, 60], [0, 50, 70], [0, 20, 120]], float),
                            name="pts", features={"track_id": [5, 7, 9]})
    w = TrackWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.weights.set_value(_common.LAB)
    w.points_combo.set_layer(pts)
    w.track_btn.click()
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT_MS)
    assert w.last_status == "done"
    tracks = [ly for ly in viewer.layers if ly._type_string == "tracks"]
    assert len(tracks) == 1
    assert tracks[0].data.shape == (3 * len(frames), 4)
    assert set(np.unique(tracks[0].data[:, 0]).astype(int)) == {5, 7, 9}
    per_frame = w.points_out_layer
    assert per_frame.data.shape == (3 * len(frames), 3)
    assert "visible" in per_frame.features.columns
    assert w.points_combo.layer() is pts          # the input stays selected for a re-run
    out = w.export_csv(tmp_path / "tracks.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "track_id,t,y,x,visible" and len(lines) == 1 + 3 * len(frames)


def test_finetune_few_steps_then_propagate_uses_new_weights(make_napari_viewer, qtbot,
                                                            small_clip, tmp_path):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    prop = propagate_widget(viewer, qtbot)
    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(ft)
    ft.device.setCurrentText("cpu")
    from corrflow_napari.training import TrainConfig
    ft.train_config = TrainConfig.finetune(crop=64, batch=1, centroid_clips=2)   # tiny
    # Stop during a long run keeps the best weights so far
    stopped = tmp_path / "stopped.pt"
    ft.set_output(stopped)
    ft.set_budget(steps=1000)
    ft.step_done.connect(lambda step, loss: ft.stop())
    ft.start()
    qtbot.waitUntil(lambda: not ft.running, timeout=WAIT_MS)
    assert ft.last_status == "cancelled" and stopped.exists()
    assert 1 <= len(ft.plot.steps) < 1000
    ft.step_done.disconnect()
    out = tmp_path / "clip_ft.pt"
    ft.set_output(out)
    ft.set_budget(steps=2)
    ft.start_btn.click()
    qtbot.waitUntil(lambda: not ft.running, timeout=WAIT_MS)
    assert ft.last_status == "done", ft.status.text()
    assert out.exists() and ft.plot.steps == [1, 2]
    ft.use_btn.click()
    assert prop.weights.value() == str(out.resolve())
    prop.end_spin.setValue(3)                                  # frames 0..3: quick
    prop.propagate()
    wait_done(qtbot, prop)
    assert prop.last_status == "done", prop.status.text()
    assert prop.last_weights == str(out.resolve())
    model = _common.get_model(prop.last_weights, "cpu")       # the cached, loaded model
    assert Path(model.weights_path) == out.resolve() and model.name == "corrflow"
    assert all(labels.data[t].any() for t in range(4)) and not labels.data[4:].any()
