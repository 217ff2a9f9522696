"""The Propagate labels widget with a real viewer, the real core and the Lab baseline."""
import numpy as np
import pytest
from qtpy.QtCore import QTimer

from corrflow_napari import propagation
from corrflow_napari.model import load_model
from corrflow_napari.model.cache import LAB, get_model
from corrflow_napari.propagation import PropagationSettings, propagate, propagate_labels

from .helpers import add_clip, error_messages, n_records, propagate_widget, wait_done


@pytest.fixture(scope="module")
def reference(small_clip):
    """What the core gives for the small clip from the frame-0 mask (forward)."""
    frames, mask = small_clip
    return propagate_labels(load_model("lab", device="cpu"), frames, {0: mask})


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
    w = propagate_widget(viewer)
    assert w.keyframes() == [0]
    before = labels.data.copy()
    written = []
    w.frame_written.connect(written.append)
    w.propagate_btn.click()
    assert w.running
    assert not w.propagate_btn.isEnabled() and w.cancel_btn.isEnabled()   # busy
    wait_done(qtbot, w)
    assert w.last_status == "done"
    assert w.propagate_btn.isEnabled() and not w.cancel_btn.isEnabled()
    assert written == list(range(1, len(before)))              # frame by frame, in order
    assert all(labels.data[t].any() for t in range(len(before)))
    np.testing.assert_array_equal(labels.data, reference)     # exactly the core's result
    np.testing.assert_array_equal(labels.data[0], before[0])  # keyframe untouched
    assert w.refresh_keyframes() == [0]     # propagated frames are not taken as keyframes
    labels.undo()                                              # ONE undo = the whole run
    np.testing.assert_array_equal(labels.data, before)
    labels.redo()
    np.testing.assert_array_equal(labels.data, reference)


def correct(labels, t, y0=45):
    """The user's correction of frame t: the object's lower part becomes object 2."""
    yy, xx = np.nonzero(labels.data[t][y0:] == 1)
    labels.data_setitem((np.full(yy.size, t), yy + y0, xx), 2)


def test_repropagate_from_here_recomputes_only_what_the_correction_changes(
        make_napari_viewer, qtbot, small_clip, monkeypatch):
    """Keyframes 0 and 9; a correction on frame 5 changes frames 1..8 (both sides of it,
    up to the neighbouring keyframes), exactly as the core computes them; frames 0 and
    9..11 stay; the video's features are not encoded again."""
    model = get_model(LAB, "cpu")                         # the instance the widget uses
    encoded = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda x: encoded.extend(range(len(x))) or encode(x))
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    w = propagate_widget(viewer)
    w.propagate()
    wait_done(qtbot, w)
    assert len(encoded) == len(small_clip[0])             # each frame encoded once
    correct(labels, 9)
    qtbot.waitUntil(lambda: w.keyframes() == [0, 9], timeout=5000)
    w.propagate()
    wait_done(qtbot, w)
    assert len(encoded) == len(small_clip[0])             # the second run: none again
    k = 5
    correct(labels, k)
    qtbot.waitUntil(lambda: w.keyframes() == [0, k, 9], timeout=5000)
    before = labels.data.copy()
    viewer.dims.set_current_step(0, k)
    w.repropagate_btn.click()
    wait_done(qtbot, w)
    assert w.last_status == "done", w.status.text()
    assert (w.last_job.start, w.last_job.stop) == (1, 9)
    np.testing.assert_array_equal(labels.data[[0, k, 9, 10, 11]], before[[0, k, 9, 10, 11]])
    expected = propagate(load_model("lab", device="cpu"), small_clip[0],
                         {t: before[t] for t in (0, k, 9)}, start=1, stop=9).labels
    others = [1, 2, 3, 4, 6, 7, 8]
    np.testing.assert_array_equal(labels.data[others], expected[others])
    assert not np.array_equal(labels.data[others], before[others])   # both sides of k
    assert len(encoded) == len(small_clip[0])             # no frame encoded again
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)
    # re-propagating from a propagated frame as it is makes it a keyframe too
    viewer.dims.set_current_step(0, 3)
    w.repropagate_btn.click()
    wait_done(qtbot, w)
    assert w.last_status == "done" and w.keyframes() == [0, 3, k, 9]


def test_repropagate_stays_in_the_chosen_frame_range(make_napari_viewer, qtbot, small_clip):
    """Frames 0..6 propagated, then a correction on frame 4: the re-run recomputes 1..6,
    not the frames after the range that the user never propagated."""
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    w = propagate_widget(viewer)
    w.frame_range.end_spin.setValue(6)
    w.propagate()
    wait_done(qtbot, w)
    assert labels.data[6].any() and not labels.data[7:].any()
    correct(labels, 4)
    viewer.dims.set_current_step(0, 4)
    w.repropagate_btn.click()
    wait_done(qtbot, w)
    assert w.last_status == "done", w.status.text()
    assert (w.last_job.start, w.last_job.stop) == (1, 7)
    assert (labels.data[5] == 2).any() and not labels.data[7:].any()


def test_cancel_keeps_finished_frames_consistent_and_undoable(make_napari_viewer, qtbot,
                                                             small_clip, reference):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    labels.data[1:, 40:60, 10:50] = 3                 # earlier content of later frames
    before = labels.data.copy()
    w = propagate_widget(viewer)
    w.keyframes_edit.setText("0")
    w.frame_written.connect(lambda t: w.cancel_btn.click() if t == 3 else None)
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


def test_closing_the_dock_cancels_the_run(make_napari_viewer, qtbot, small_clip):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    w = propagate_widget(viewer)
    w.frame_written.connect(
        lambda t: viewer.window.remove_dock_widget(w) if t == 2 else None)
    w.propagate()
    wait_done(qtbot, w)
    assert w.last_status == "cancelled"
    assert not labels.data[-1].any() and labels.editable


def test_ui_stays_responsive_while_propagating(make_napari_viewer, qtbot, small_clip):
    viewer = make_napari_viewer()
    add_clip(viewer, small_clip)
    w = propagate_widget(viewer)
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
    w = propagate_widget(viewer)
    before = labels.data.copy()
    # caught in the GUI thread: a keyframe outside the video
    start = n_records()
    w.keyframes_edit.setText("0, 99")
    w.propagate()
    assert not w.running
    assert any("out of range" in m for m in error_messages(start))
    assert "out of range" in w.status.text()
    # raised by the core in the worker: the listed keyframe has no object painted
    start = n_records()
    w.keyframes_edit.setText("5")
    w.propagate()
    wait_done(qtbot, w)
    assert w.last_status == "error"
    assert any("no object" in m for m in error_messages(start))
    np.testing.assert_array_equal(labels.data, before)
    assert labels.editable
    # a Labels layer that does not match the video
    start = n_records()
    w.labels_combo.set_layer(viewer.add_labels(np.zeros((3, 8, 8), np.uint8), name="bad"))
    w.propagate()
    assert any("shape" in m for m in error_messages(start))


def test_advanced_settings_reach_the_core(make_napari_viewer, qtbot, small_clip,
                                          monkeypatch):
    viewer = make_napari_viewer()
    add_clip(viewer, small_clip)
    w = propagate_widget(viewer)
    assert not w.advanced.expanded                             # collapsed by default
    assert w.settings() == PropagationSettings()               # the CLI's defaults
    seen = []
    core = propagation.propagate

    def spy(*args, **kwargs):
        seen.append(kwargs["settings"])
        return core(*args, **kwargs)

    monkeypatch.setattr(propagation, "propagate", spy)
    w.advanced.set_value("n_recent", 5)
    w.advanced.set_value("topk", None)                         # "all matches"
    w.advanced.editor("scale").setValue(0.5)
    w.end_spin.setValue(2)
    w.propagate()
    wait_done(qtbot, w)
    assert w.last_status == "done", w.status.text()
    assert seen == [PropagationSettings(n_recent=5, topk=None, scale=0.5)]
    assert w.last_job.settings == seen[0]


def test_parse_keyframes():
    from corrflow_napari.errors import InputError
    from corrflow_napari.widgets.propagate import parse_keyframes
    assert parse_keyframes("40, 0;3 3", 50) == [0, 3, 40]
    assert parse_keyframes("", 5) == []
    for text, match in (("1-4", "not a frame number"), ("x", "not a frame number"),
                        ("7", "out of range")):
        with pytest.raises(InputError, match=match):
            parse_keyframes(text, 5)
