"""Layer <-> array adapters, without a viewer: plain arrays in stand-in objects and napari
layer objects (which need no viewer)."""
from types import SimpleNamespace

import numpy as np
import pytest
from napari.layers import Image, Points

from corrflow_napari.errors import InputError
from corrflow_napari.widgets.layer_arrays import (
    RGBView,
    current_frame,
    points_input,
    tracks_layer_data,
    video_frames,
)


def image(data, rgb, limits=(0, 255), name="clip"):
    return SimpleNamespace(data=data, rgb=rgb, contrast_limits=limits, name=name)


def test_rgb_uint8_video_is_used_as_it_is():
    frames = np.zeros((4, 6, 8, 3), np.uint8)
    assert video_frames(image(frames, rgb=True)) is frames
    assert video_frames(Image(frames, rgb=True)) is frames


def test_grey_float_video_maps_contrast_limits_to_uint8_lazily():
    data = np.linspace(0, 2, 4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    v = video_frames(image(data, rgb=False, limits=(0.5, 1.5)))
    assert isinstance(v, RGBView) and v.shape == (4, 5, 6, 3) and v.dtype == np.uint8
    assert len(v) == 4 and v.ndim == 4
    f = v[1]
    assert f.shape == (5, 6, 3) and f.dtype == np.uint8
    expected = np.clip(np.rint((data[1] - 0.5) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(f[..., 0], expected)
    np.testing.assert_array_equal(f[..., 0], f[..., 2])          # grey repeated
    np.testing.assert_array_equal(np.asarray(v)[2], v[2])
    np.testing.assert_array_equal(v[1:3], np.asarray(v)[1:3])


def test_uint8_grey_with_narrowed_limits_is_rescaled_and_rgba_loses_alpha():
    data = np.full((2, 3, 4), 100, np.uint8)
    v = video_frames(image(data, rgb=False, limits=(50, 150)))
    assert int(v[0][0, 0, 0]) == 128                              # (100-50)/100*255
    rgba = np.full((2, 3, 4, 4), 7, np.uint8)
    v = video_frames(image(rgba, rgb=True))
    assert v.shape == (2, 3, 4, 3) and (v[1] == 7).all()


def test_video_errors_are_input_errors():
    with pytest.raises(InputError, match="no video"):
        video_frames(None)
    with pytest.raises(InputError, match="single RGB picture"):
        video_frames(image(np.zeros((5, 6, 3), np.uint8), rgb=True))
    with pytest.raises(InputError, match="a video must be"):
        video_frames(image(np.zeros((5, 6), np.uint8), rgb=False))


def test_current_frame_follows_the_viewer_and_is_clamped():
    layer = Image(np.zeros((10, 4, 4), np.uint8))
    assert current_frame(SimpleNamespace(dims=SimpleNamespace(point=(3.4, 0, 0))), layer) == 3
    assert current_frame(SimpleNamespace(dims=SimpleNamespace(point=(42, 0, 0))), layer) == 9
    assert current_frame(SimpleNamespace(dims=SimpleNamespace(point=(-5, 0, 0))), layer) == 0


def test_points_input_rows_and_track_ids():
    pts, ids = points_input(Points(np.array([[1, 10, 20], [2.2, 5, 6]])), t_now=0)
    np.testing.assert_array_equal(pts, [[1, 10, 20], [2, 5, 6]])  # frames rounded
    np.testing.assert_array_equal(ids, [0, 1])
    pts, _ = points_input(Points(np.array([[10.0, 20.0]])), t_now=4)  # 2-D: current frame
    np.testing.assert_array_equal(pts, [[4, 10, 20]])
    layer = Points(np.array([[0, 1, 1], [0, 2, 2]]), features={"track_id": [7, 3]})
    np.testing.assert_array_equal(points_input(layer, 0)[1], [7, 3])


def test_points_input_errors_and_keyframes():
    with pytest.raises(InputError, match="empty"):
        points_input(Points(np.zeros((0, 3)), name="p"), 0)
    bad = Points(np.array([[0, 1, 1]]), features={"track_id": ["a"]})
    with pytest.raises(InputError, match="whole numbers"):
        points_input(bad, 0)
    keys = Points(np.array([[0, 1, 1], [5, 2, 2]]), features={"track_id": [4, 4]})
    np.testing.assert_array_equal(points_input(keys, 0)[1], [4, 4])  # one track, 2 frames


def test_tracks_layer_data_orders_by_track_then_time_and_drops_lost():
    ids = np.array([9, 2])
    pos = np.array([[[1, 1], [5, 5]], [[2, 2], [np.nan, np.nan]], [[3, 3], [7, 7]]])
    vis = np.array([[True, True], [False, False], [True, False]])
    tracks, points, features = tracks_layer_data(ids, pos, vis)
    # track 2 is lost on frame 1: two segments, so no tail is drawn across the gap
    np.testing.assert_array_equal(tracks, [[0, 0, 5, 5], [1, 2, 7, 7],
                                           [2, 0, 1, 1], [2, 1, 2, 2], [2, 2, 3, 3]])
    np.testing.assert_array_equal(points, tracks[:, 1:])
    np.testing.assert_array_equal(features["track_id"], [2, 2, 9, 9, 9])
    np.testing.assert_array_equal(features["visible"], [True, False, True, False, True])


def test_adapters_and_model_cache_import_no_qt():
    import subprocess
    import sys
    code = ("import sys, corrflow_napari.widgets.layer_arrays, "
            "corrflow_napari.widgets.labels_edit, corrflow_napari.model.cache; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
