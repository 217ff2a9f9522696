"""A run's edit of a Labels layer (one undo step) and keyframe detection, without a
viewer (napari layer objects need none)."""
from types import SimpleNamespace

import numpy as np
from napari.layers import Labels

from corrflow_napari.widgets.labels_edit import (
    WRITTEN_KEY,
    LabelsEdit,
    PaintLock,
    detect_keyframes,
    fingerprint,
    mark_written,
)


def test_fingerprint_depends_on_values_and_dtype():
    a = np.zeros((3, 4), np.uint8)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.astype(np.int32))
    b = a.copy()
    b[1, 1] = 1
    assert fingerprint(a) != fingerprint(b)


def test_painted_frames_are_keyframes_written_ones_are_not():
    data = np.zeros((5, 4, 4), np.uint8)
    data[0, 1, 1] = data[2, 2, 2] = data[3, 0, 0] = 1
    stand_in = SimpleNamespace(data=data, metadata={WRITTEN_KEY: {2: {fingerprint(data[2])}}})
    assert detect_keyframes(stand_in) == [0, 3]
    data[2, 3, 3] = 1                                   # the user corrected frame 2
    assert detect_keyframes(stand_in) == [0, 2, 3]


def test_labels_edit_is_one_undo_step_and_skips_keyframes():
    data = np.zeros((4, 5, 5), np.uint8)
    data[0, 2, 2] = 1
    data[2, 1:3, 1:3] = 4                               # frame 2 held labels before the run
    data[3] = 3
    layer = Labels(data.copy())
    before = layer.data.copy()
    edit = LabelsEdit(layer, keyframes=[0])
    assert layer.mode == "pan_zoom"                     # no painting during the run
    assert not edit.write(0, np.full((5, 5), 2))        # keyframe: untouched
    for t in (1, 2, 3):
        assert edit.write(t, np.full((5, 5), t, np.int64))
    assert edit.n_written == 3 and layer.data.dtype == np.uint8
    edit.finish()
    assert layer.editable
    after = layer.data.copy()
    np.testing.assert_array_equal(after[0], before[0])
    assert (after[1] == 1).all() and (after[3] == 3).all()
    assert detect_keyframes(layer) == [0]               # written frames are not keyframes
    assert [np.ndim(old) for _, old, _ in edit.atoms] == [0, 2]   # empty: one value;
    assert [np.shape(new) for _, _, new in edit.atoms] == [(5, 5), (5, 5)]   # 3: the same
    layer.undo()                                        # ONE undo = the whole run
    np.testing.assert_array_equal(layer.data, before)
    layer.redo()
    np.testing.assert_array_equal(layer.data, after)


def test_undo_keeps_the_box_around_each_frames_changes():
    data = np.zeros((3, 40, 50), np.uint16)
    data[1, 5:9, 5:9] = 2
    layer = Labels(data.copy())
    edit = LabelsEdit(layer, keyframes=[0])
    new1 = data[1].copy()
    new1[20:30, 10:15] = 7                              # an object appears
    new2 = np.zeros((40, 50), np.uint16)                # unchanged
    assert edit.write(1, new1) and edit.write(2, new2)
    edit.finish()
    assert edit.n_written == 2 and len(edit.atoms) == 1      # frame 2 did not change
    index, old, new = edit.atoms[0]
    assert index == (1, slice(20, 30), slice(10, 15)) and np.ndim(old) == 0
    assert new.shape == (10, 5)
    after = layer.data.copy()
    layer.undo()
    np.testing.assert_array_equal(layer.data, data)
    layer.redo()
    np.testing.assert_array_equal(layer.data, after)


def test_labels_edit_without_frames_records_nothing():
    layer = Labels(np.zeros((2, 3, 3), np.uint8))
    edit = LabelsEdit(layer, keyframes=[0])
    edit.finish()
    assert layer.editable and edit.n_written == 0
    assert layer.metadata[WRITTEN_KEY] == {}


def test_paint_lock_refuses_editing_modes_and_keeps_history():
    layer = Labels(np.zeros((2, 8, 8), np.uint8))
    layer.brush_size = 3
    layer.paint((0, 4, 4), 1)                           # a user's stroke: one undo step
    stroke = layer.data.copy()
    layer.mode = "paint"
    refused = []
    lock = PaintLock(layer, on_refused=lambda: refused.append(layer.mode))
    assert layer.mode == "pan_zoom"
    for mode in ("paint", "fill", "erase", "polygon"):
        layer.mode = mode
        assert layer.mode == "pan_zoom", mode
    assert len(refused) == 4
    layer.mode = "pick"                                 # not an edit: allowed
    assert layer.mode == "pick" and layer.editable
    lock.release()
    assert layer.mode == "paint"                        # the mode the user had
    layer.mode = "fill"
    assert layer.mode == "fill" and len(refused) == 4   # released: no longer refused
    layer.undo()                                        # the stroke is still undoable
    assert not layer.data.any() and stroke.any()


def test_mark_written_frames_are_not_keyframes():
    layer = Labels(np.ones((3, 4, 4), np.uint8))
    mark_written(layer, [1, 2])
    assert detect_keyframes(layer) == [0]
    layer.data[2, 0, 0] = 2                             # changed afterwards: a keyframe
    assert detect_keyframes(layer) == [0, 2]
