"""Two-sided propagation between keyframes, affected ranges and per-frame confidence."""
import numpy as np
import pytest

from corrflow_napari.errors import InputError
from corrflow_napari.propagation import (
    PropagationSettings,
    affected_range,
    propagate,
    propagate_labels,
    schedule,
)
from tests.test_propagation import iou, moving_squares

ONE_SIDED = PropagationSettings(fusion="one-sided")


def test_frames_next_to_each_keyframe_follow_it(lab):
    # keyframe 0 has only object 3, keyframe 9 only object 7: the frames next to 0 follow
    # 0 (no object 7), the frames next to 9 follow 9 (object 7 where it really is).
    frames, gt = moving_squares(t=10)
    first, last = gt[0].copy(), gt[9].copy()
    first[first == 7] = 0
    last[last == 3] = 0
    for fusion in ("distance", "confidence"):
        out = propagate_labels(lab, frames, {0: first, 9: last},
                               settings=PropagationSettings(fusion=fusion))
        assert not (out[1] == 7).any() and iou(out[1] == 3, gt[1] == 3) > 0.7
        assert not (out[8] == 3).any() and iou(out[8] == 7, gt[8] == 7) > 0.7
    one = propagate_labels(lab, frames, {0: first, 9: last}, settings=ONE_SIDED)
    assert not (one[8] == 7).any()               # one-sided: frame 8 still follows frame 0


def test_correction_changes_frames_before_and_after_it(lab):
    frames, gt = moving_squares(t=12)
    wrong = gt[0].copy()
    wrong[wrong == 7] = 0                         # frame 0 forgets object 7
    before = propagate_labels(lab, frames, {0: wrong})
    after = propagate_labels(lab, frames, {0: wrong, 6: gt[6]})
    assert not (before[1:] == 7).any()
    for t in (4, 5):                              # before the correction: fused with
        assert iou(after[t] == 7, gt[t] == 7) > 0.6, t   # frame 0's "no object 7"
    for t in (7, 8, 11):                          # after it: from the correction alone
        assert iou(after[t] == 7, gt[t] == 7) > 0.8, t
    one = propagate_labels(lab, frames, {0: wrong, 6: gt[6]}, settings=ONE_SIDED)
    assert not (one[1:6] == 7).any() and iou(one[7] == 7, gt[7] == 7) > 0.8


def test_distance_weights_are_linear(lab):
    # values between two keyframes: (b - t) / (b - a) x forward + the rest x backward
    import torch

    from corrflow_napari.propagation import propagate_sides
    frames, _ = moving_squares(t=7)
    seeds = {0: torch.zeros(2, 16, 20), 6: torch.zeros(2, 16, 20)}
    seeds[0][0], seeds[6][1] = 1, 1              # 0: all channel 0, 6: all channel 1
    got = {}
    propagate_sides(lab, frames, seeds, lambda s: got.setdefault(s.t, s))
    assert sorted(got) == [1, 2, 3, 4, 5]
    for t, s in got.items():
        assert s.sources == (0, 6) and s.w_forward == pytest.approx((6 - t) / 6)
        torch.testing.assert_close(s.values[1], torch.full((16, 20), t / 6), atol=1e-5, rtol=0)


def test_schedule_and_affected_range():
    assert schedule([2, 6], 10, 0, 10, "both", two_sided=True) == [
        (2, [3, 4, 5]), (6, [7, 8, 9]), (2, [1, 0]), (6, [5, 4, 3])]
    assert schedule([2, 6], 10, 0, 10, "both") == [(2, [3, 4, 5]), (6, [7, 8, 9]),
                                                   (2, [1, 0])]
    assert schedule([2, 6], 10, 7, 9, "both", two_sided=True) == [(6, [7, 8])]
    assert affected_range({0: 1, 5: 1, 9: 1}, 5, 12) == (1, 9)
    assert affected_range([0, 5], 5, 12) == (1, 12)
    assert affected_range([5], 5, 12) == (0, 12)
    assert affected_range([0, 9], 5, 12) == (1, 9)           # a removed keyframe 5
    assert affected_range([0, 5, 9], 5, 12, ONE_SIDED) == (5, 9)
    assert affected_range([3, 9], 3, 12, ONE_SIDED) == (0, 9)
    assert affected_range([0, 5], 5, 12, PropagationSettings(max_keyframes=2)) == (0, 12)


def test_rerun_on_affected_range_equals_full_run(lab):
    # what the widget and the robot do: after a correction at k only affected_range is
    # re-propagated; merged into the earlier result it equals a full run.
    frames, gt = moving_squares(t=14)
    keys = {0: gt[0], 10: gt[10]}
    old = propagate_labels(lab, frames, keys)
    keys[5] = gt[5]
    start, stop = affected_range(keys, 5, len(frames))
    part = propagate(lab, frames, keys, start=start, stop=stop)
    merged = old.copy()
    merged[start:stop] = part.labels[start:stop]
    np.testing.assert_array_equal(merged, propagate_labels(lab, frames, keys))
    assert np.isnan(part.confidence[:start]).all() and np.isnan(part.confidence[stop:]).all()


def test_confidence_lowest_where_the_object_is_occluded(lab):
    frames, gt = moving_squares(t=10)
    occluded = 6
    frames[occluded, :, 4:76] = 90                # a grey bar hides both squares
    res = propagate(lab, frames, {0: gt[0]})
    assert res.confidence.shape == (10,) and res.object_confidence.shape == (10, 2)
    assert list(res.object_ids) == [3, 7]
    assert res.confidence[0] == 1.0 and np.all((res.confidence >= 0) & (res.confidence <= 1))
    assert int(np.argmin(res.confidence)) == occluded
    assert res.confidence[occluded] < 0.5 < res.confidence[[1, 2, 3, 4]].min()
    np.testing.assert_array_equal(res.labels, propagate_labels(lab, frames, {0: gt[0]}))


def test_bad_fusion_is_an_input_error(lab):
    frames, gt = moving_squares(t=4)
    with pytest.raises(InputError, match="fusion"):
        propagate_labels(lab, frames, {0: gt[0]}, settings=PropagationSettings(fusion="max"))


def test_soft_iou_is_zero_for_a_lost_object():
    """An object that wins no cell (its probability gone, e.g. after ``drop_faint``) is
    not "crisp": soft_iou 0, like the spread-out case, while a crisp object scores 1."""
    import torch

    from corrflow_napari.confidence import measures
    v = torch.zeros(3, 4, 4)
    v[0] = 1.0
    v[1, :2, :2], v[0, :2, :2] = 1.0, 0.0        # object 1: crisp, 4 cells
    got = measures(v, torch.tensor([4.0, 4.0]))  # object 2: no probability anywhere
    assert got["soft_iou"].tolist() == [1.0, 0.0]
