"""The per-frame confidence helpers of the Propagate widget (no viewer)."""
import numpy as np

from corrflow_napari.widgets.confidence_strip import (
    ConfidenceStrip,
    least_confident,
    merge_confidence,
)


def test_least_confident_skips_keyframes_and_frames_not_computed():
    conf = np.array([1.0, 0.4, np.nan, 0.2, 0.9])
    assert least_confident(conf, keyframes=[0]) == 3
    assert least_confident(conf, keyframes=[0, 3]) == 1
    assert least_confident(np.full(3, np.nan), keyframes=[]) is None


def test_merge_keeps_frames_a_run_did_not_compute():
    old = np.array([1.0, 0.5, 0.6, 0.7, 0.8])
    new = np.array([np.nan, 0.9, np.nan, np.nan, 0.1])     # a run over 1..3, cancelled at 2
    np.testing.assert_array_equal(merge_confidence(old, new, 1, 4), [1.0, 0.9, 0.6, 0.7, 0.8])
    np.testing.assert_array_equal(merge_confidence(None, new, 0, 5), new)


def test_strip_maps_clicks_to_frames(qtbot):
    strip = ConfidenceStrip()
    qtbot.addWidget(strip)
    strip.resize(100, 16)
    strip.set_confidence(np.linspace(0, 1, 10), keyframes=[0])
    assert [strip.frame_at(x) for x in (0, 9.9, 10, 55, 99.9, 500)] == [0, 0, 1, 5, 9, 9]
