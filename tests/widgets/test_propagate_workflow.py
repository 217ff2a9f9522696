"""The Propagate widget as a user lives it, in a real viewer: undo keeps every earlier
step, progress in the dock, following the frames as they are written, exporting."""
import re

import numpy as np
from PIL import Image
from qtpy.QtCore import QPoint, Qt

from corrflow_napari.io import read_mask
from corrflow_napari.model.cache import LAB
from corrflow_napari.widgets.layer_arrays import current_frame

from .helpers import add_clip, propagate_widget, wait_done


def stroke(labels, t, y, x, label):
    """One brush stroke of the user on frame t (napari's own paint: one undo step)."""
    labels.brush_size = 9
    labels.selected_label = label
    labels.paint((t, y, x), label)
    return labels.data.copy()


def test_every_earlier_step_stays_undoable(make_napari_viewer, qtbot, small_clip):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    w = propagate_widget(viewer)
    states = [labels.data.copy()]
    states.append(stroke(labels, 0, 20, 20, 2))                 # 1: the user paints
    qtbot.waitUntil(lambda: w.keyframes() == [0], timeout=5000)
    labels.mode = "paint"
    w.propagate()                                               # 2: a run
    assert labels.mode == "pan_zoom" and labels.editable        # locked, history kept
    labels.mode = "fill"                                        # refused while running
    assert labels.mode == "pan_zoom"
    controls = viewer.window._qt_viewer.controls.widgets[labels]
    assert controls.panzoom_button.isChecked() and not controls.fill_button.isChecked()
    wait_done(qtbot, w)
    assert w.last_status == "done"
    assert labels.mode == "paint"                               # the user's mode is back
    states.append(labels.data.copy())
    states.append(stroke(labels, 6, 40, 70, 3))                 # 3: a correction
    qtbot.waitUntil(lambda: w.keyframes() == [0, 6], timeout=5000)
    viewer.dims.set_current_step(0, 6)
    w.repropagate_btn.click()                                   # 4: a second run
    wait_done(qtbot, w)
    assert w.last_status == "done"
    states.append(labels.data.copy())
    assert all(not np.array_equal(a, b) for a, b in zip(states, states[1:]))
    for expected in reversed(states[:-1]):                      # undo 4, 3, 2, 1
        labels.undo()
        np.testing.assert_array_equal(labels.data, expected)
    for expected in states[1:]:                                 # and redo them all
        labels.redo()
        np.testing.assert_array_equal(labels.data, expected)


def test_progress_text_and_follow(make_napari_viewer, qtbot, small_clip):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    w = propagate_widget(viewer)
    n = len(small_clip[0])
    viewer.dims.set_current_step(0, n // 2)           # napari opens stacks mid-way
    w.follow.setChecked(True)
    seen = []
    w.frame_written.connect(lambda t: seen.append(
        (t, current_frame(viewer, labels), w.progress.text(),
         None if w.runner.pbar is None else w.runner.pbar.total)))
    w.propagate()
    wait_done(qtbot, w)
    assert w.last_status == "done"
    assert [t for t, *_ in seen] == list(range(1, n))
    assert all(shown == t for t, shown, *_ in seen)              # followed every frame
    pattern = re.compile(r"frame (\d+)/(\d+), [0-9.e+-]+ s/frame, "
                         r"(\d+ s|\d+ min \d+ s) left")
    texts = [text for *_, text, _ in seen]
    assert sum(bool(pattern.fullmatch(s)) for s in texts) >= n - 3, texts
    assert {total for *_, total in seen} == {n - 1}              # napari's progress bar
    summary = re.compile(rf"{n - 1} frames written in \d+ s")
    qtbot.waitUntil(lambda: bool(summary.fullmatch(w.progress.text())), timeout=2000)
    w.follow.setChecked(False)                                   # off: the view stays
    viewer.dims.set_current_step(0, 3)
    w.propagate()
    wait_done(qtbot, w)
    assert current_frame(viewer, labels) == 3


def test_export_labels_png_folder_and_tif(make_napari_viewer, qtbot, small_clip, tmp_path,
                                          monkeypatch):
    import tifffile
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    w = propagate_widget(viewer)
    w.propagate()
    wait_done(qtbot, w)
    written = w.export_labels(tmp_path / "masks")
    assert [p.name for p in written] == [f"{t:05d}.png" for t in range(len(labels.data))]
    for t, p in enumerate(written):
        im = Image.open(p)
        assert im.mode == "P"                                    # indexed, with a palette
        ids, palette = read_mask(p)
        np.testing.assert_array_equal(ids, labels.data[t])
    assert tuple(palette[1]) == (128, 0, 0)                      # the CLI's DAVIS colours
    assert not list(tmp_path.glob("masks/.*"))                   # no temp file left
    (tif,) = w.export_labels(tmp_path / "labels.tif")
    np.testing.assert_array_equal(tifffile.imread(tif), labels.data)
    # the writer contributions, as File > Save Selected Layers... uses them
    from napari._qt import qt_viewer
    viewer.layers.selection.active = labels
    qt = viewer.window._qt_viewer
    for name, kind in (("saved", "indexed PNG folder"), ("saved.tif", "tif stack")):
        ext_str, _ = qt_viewer._npe2.file_extensions_string_for_layers([labels])
        chosen = next(f for f in ext_str.split(";;") if kind in f)
        monkeypatch.setattr(qt_viewer.QFileDialog, "getSaveFileName",
                            lambda *a, _n=name, _f=chosen, **k: (str(tmp_path / _n), _f))
        qt._save_layers_dialog(selected=True)
    assert len(list((tmp_path / "saved").glob("*.png"))) == len(labels.data)
    np.testing.assert_array_equal(read_mask(tmp_path / "saved" / "00003.png")[0],
                                  labels.data[3])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "saved.tif"), labels.data)


def test_features_are_kept_per_video_and_dropped_when_they_cannot_serve(
        make_napari_viewer, qtbot, small_clip):
    viewer = make_napari_viewer()
    image, labels = add_clip(viewer, small_clip)
    w = propagate_widget(viewer)
    w.end_spin.setValue(3)
    w.propagate()
    wait_done(qtbot, w)
    first = w.features.cache
    assert first is not None and len(first) > 0
    w.propagate()
    wait_done(qtbot, w)
    assert w.features.cache is first                      # same video: kept
    w.advanced.editor("scale").setValue(0.5)              # another working size
    w.propagate()
    wait_done(qtbot, w)
    assert w.features.cache is not first and len(first) == 0   # the old one emptied
    second = w.features.cache
    image.data = image.data[:, ::-1].copy()               # new pixels in the layer
    assert w.features.cache is None and len(second) == 0
    w.propagate()
    wait_done(qtbot, w)
    third = w.features.cache
    w.weights.add_file(__file__, select=True)             # other weights: a new cache
    assert w.features.get(image, w.weights.value(), "cpu", w.settings())[0] is not third
    w.features.get(image, LAB, "cpu", w.settings())
    viewer.layers.remove(image)                           # the video is gone
    assert w.features.cache is None


def test_confidence_strip_and_go_to_least_confident_frame(make_napari_viewer, qtbot,
                                                          small_clip):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    w = propagate_widget(viewer)
    assert not w.worst_btn.isEnabled()                    # nothing propagated yet
    w.propagate()
    wait_done(qtbot, w)
    conf = w.confidence()
    assert conf.shape == (len(labels.data),) and conf[0] == 1.0
    assert np.isfinite(conf).all() and (conf[1:] < 1).all()
    np.testing.assert_array_equal(w.strip.confidence, conf)
    worst = 1 + int(np.argmin(conf[1:]))
    viewer.dims.set_current_step(0, 0 if worst else 1)
    assert w.worst_btn.isEnabled()
    w.worst_btn.click()
    assert current_frame(viewer, labels) == worst
    assert w.strip.current == worst
    # a corrected worst frame is a keyframe: the button then goes to the next worst
    labels.data_setitem((np.array([worst]), np.array([5]), np.array([5])), 3)
    qtbot.waitUntil(lambda: worst in w.keyframes(), timeout=5000)
    second = int(np.argmin(np.where(np.isin(np.arange(len(conf)), [0, worst]), 2, conf)))
    assert w.go_to_least_confident() == second != worst
    qtbot.mouseClick(w.strip, Qt.MouseButton.LeftButton,
                     pos=QPoint(int((3.5 / len(conf)) * w.strip.width()), 5))
    assert current_frame(viewer, labels) == 3             # the strip shows frames too


def test_three_docks_fit_a_1080_px_screen(make_napari_viewer):
    """Propagate, Track and Fine-tune stacked in one dock area (as the Plugins menu adds
    them) need less than 1080 px of height; ours stay short."""
    viewer = make_napari_viewer()
    viewer.open_sample("corrflow-napari", "bigbuckbunny")
    widgets = {}
    for name in ("Propagate labels", "Track points", "Fine-tune model"):
        _, widgets[name] = viewer.window.add_plugin_dock_widget("corrflow-napari", name)
    window = viewer.window._qt_window
    assert window.minimumSizeHint().height() <= 1080
    assert widgets["Propagate labels"].minimumSizeHint().height() <= 320
    assert widgets["Track points"].minimumSizeHint().height() <= 250
    assert not widgets["Propagate labels"].advanced.expanded
    assert not widgets["Track points"].advanced.expanded
