"""References moved by whole cells: the keyframe follows its object (masks) and the
shift helper shared with point tracking."""
import numpy as np
import torch

from corrflow_napari.propagation import PropagationSettings, propagate_labels
from corrflow_napari.reference_shift import (
    moved_groups,
    moved_keyframe,
    object_shifts,
    shift_cells,
)


def _labels(h, w, boxes):
    """(V, h, w) one-hot soft labels: object i+1 fills boxes[i] = (y, x, size)."""
    vals = torch.zeros(len(boxes) + 1, h, w)
    vals[0] = 1
    for i, (y, x, size) in enumerate(boxes):
        vals[:, y:y + size, x:x + size] = 0
        vals[i + 1, y:y + size, x:x + size] = 1
    return vals


def test_shift_cells_moves_content_and_fills_zeros():
    x = torch.arange(12.0).reshape(1, 3, 4)
    out = shift_cells(x, 1, -2)
    assert out[0, 1, 0] == x[0, 0, 2] and out[0, 2, 1] == x[0, 1, 3]
    assert (out[0, 0] == 0).all() and (out[0, :, 2:] == 0).all()
    assert shift_cells(x, 0, 0) is x
    assert (shift_cells(x, 5, 0) == 0).all()


def test_object_shifts_per_object_and_where_a_lost_object_was_last_seen():
    key = _labels(30, 40, [(5, 6, 4), (20, 30, 4)])
    last: dict = {}
    now = _labels(30, 40, [(15, 26, 4), (21, 29, 4)])     # 1 moved (10, 20), 2 by (1, -1)
    assert object_shifts(key, now, last) == {1: (10, 20), 2: (0, 0)}   # 2 rounds to 0
    # object 1 gone from view: looked for where it was last seen; object 2 moved on
    assert object_shifts(key, _labels(30, 40, [(0, 0, 1), (24, 24, 4)]), last) == \
        {1: (10, 20), 2: (4, -6)}


def test_moved_groups_and_moved_keyframe_keep_other_objects_labels_in_place():
    key = _labels(30, 40, [(5, 6, 4), (20, 30, 4), (2, 30, 2)])
    groups = moved_groups(key, {1: (4, 4), 2: (0, 0), 3: (4, 4)})
    assert groups == [((4, 4), (1, 3))]                   # 1 and 3 share one moved copy
    feat = torch.randn(8, 30, 40)
    f, v, usable = moved_keyframe(feat, key, (4, 4), (1, 3))
    torch.testing.assert_close(f[:, 9:13, 10:14], feat[:, 5:9, 6:10])
    assert (v[1, 9:13, 10:14] == 1).all() and (v[3, 6:8, 34:36] == 1).all()
    assert (usable[0, 24:28, 34:38] == 0).all()           # object 2's cells (moved): unusable
    torch.testing.assert_close(f[:, :4], feat[:, :4])     # nothing moved in: the keyframe
    assert usable[0, 10, 10] == 1 and usable[0, 0, 0] == 1
    _, _, single = moved_keyframe(feat, _labels(30, 40, [(5, 6, 4)]), (4, 4), (1,))
    assert single is None                                 # one object: no mask needed
    assert moved_groups(key, {1: (0, 0), 2: (0, 0), 3: (0, 0)}) == []


def occluded_runner(t=24, h=64, w=160, step=4, hidden=(9, 12)):
    """A red square moving right ``step`` px/frame over a grey floor, invisible (behind
    nothing: simply absent) on frames ``hidden``; it has moved 3 cells while hidden and
    more than the 6-cell window from its keyframe position."""
    rng = np.random.default_rng(0)
    floor = (90 + rng.integers(-8, 9, size=(h, w, 1))).repeat(3, 2).astype(np.uint8)
    frames = np.repeat(floor[None], t, 0)
    labels = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        if hidden[0] <= i < hidden[1]:
            continue
        x = 4 + step * i
        frames[i, 20:40, x:x + 20] = (220, 40, 40)
        labels[i, 20:40, x:x + 20] = 1
    return frames, labels


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_followed_keyframe_finds_the_object_again_after_it_was_hidden(lab):
    frames, gt = occluded_runner()
    # the paper's window (M = 6 cells): the object runs out of it
    fixed = propagate_labels(lab, frames, {0: gt[0]},
                             settings=PropagationSettings(follow=False, radius=6))
    followed = propagate_labels(lab, frames, {0: gt[0]},
                                settings=PropagationSettings(follow=True, radius=6))
    for t in range(1, 9):                     # before it hides: both follow it
        assert _iou(fixed[t] == 1, gt[t] == 1) > 0.9
        assert _iou(followed[t] == 1, gt[t] == 1) > 0.9
    assert not (followed[9:12] == 1).any()    # hidden: nothing labelled
    # it reappears ~10 cells from where the keyframe has it: the fixed window cannot see
    # it, the keyframe moved to where it was last seen can
    assert all(_iou(fixed[t] == 1, gt[t] == 1) < 0.1 for t in range(12, 24))
    assert all(_iou(followed[t] == 1, gt[t] == 1) > 0.9 for t in range(12, 24))


def test_chain_resumed_from_the_cache_remembers_where_a_hidden_object_was(lab):
    # a first run stops while the object is hidden (frames 9-10); a second run over the
    # whole clip takes frames 1-10 from the cache and must still look for the object
    # where it was last seen (frame 8), exactly as a fresh run does
    from corrflow_napari.feature_cache import FeatureCache
    from corrflow_napari.propagation import propagate

    frames, gt = occluded_runner()
    cache = FeatureCache()
    propagate(lab, frames, {0: gt[0]}, stop=11, cache=cache, video_key="clip")
    resumed = propagate(lab, frames, {0: gt[0]}, cache=cache, video_key="clip").labels
    fresh = propagate_labels(lab, frames, {0: gt[0]})
    np.testing.assert_array_equal(resumed, fresh)
    assert all(_iou(resumed[t] == 1, gt[t] == 1) > 0.9 for t in range(12, 24))
