"""A re-run's new chains settle onto the old chain where the correction's effect faded."""
import numpy as np
import torch

import corrflow_napari.propagation as propagation
from corrflow_napari.chain_reuse import Settling, difference, old_chain
from corrflow_napari.feature_cache import FeatureCache
from corrflow_napari.propagation import PropagationSettings, affected_range, propagate
from tests.test_propagation import moving_squares


def test_difference_is_the_largest_share_of_an_object_that_moved():
    a = torch.zeros(3, 4, 4)
    a[0] = 1
    a[0, :2], a[1, :2] = 0, 1                       # object 1: top half
    assert difference(a, a) == 0
    b = a.clone()
    b[1, 0], b[0, 0] = 0, 1                         # object 1 loses a row of its 8 cells
    assert abs(difference(b, a) - 4 / 12) < 1e-6    # |moved| 4 over 4 + 8
    c = a.clone()
    c[2, 3], c[0, 3] = 1, 0                         # object 2 only in c: all of it moved
    assert difference(c, a) == 1.0
    assert difference(a[:1], a[:1]) == 0.0          # background only


def test_settling_needs_agreeing_frames_in_a_row():
    old = {t: torch.full((2, 2, 2), 0.5) for t in range(10)}
    near, far = torch.full((2, 2, 2), 0.5), torch.tensor([1.0, 0.0]).reshape(2, 1, 1) * \
        torch.ones(2, 2, 2)
    s = Settling(old.get, settle=0.1, n=2, runs=2)
    s.computed(0, near)
    assert s.reuse(1) is None                       # one agreeing frame is not enough
    s.computed(1, far)                              # a disagreeing one starts again
    s.computed(2, near)
    assert s.reuse(3) is None
    s.computed(3, near)
    assert s.reuse(4) is old[4] and s.settled_at == 4
    assert Settling(None, 0.1, 2, 2).reuse(4) is None


def test_old_chain_is_the_same_direction_before_the_new_keyframe():
    assert old_chain(5, True, [0, 5, 9]) == (0, True)
    assert old_chain(5, False, [0, 5, 9]) == (9, False)
    assert old_chain(0, True, [0, 9]) is None and old_chain(9, False, [0, 9]) is None


def _counting_attend(monkeypatch) -> list:
    calls = []
    real = propagation.attend

    def attend(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(propagation, "attend", attend)
    return calls


def test_rerun_settles_onto_the_old_chain(lab, monkeypatch):
    frames, gt = moving_squares(t=24)
    calls = _counting_attend(monkeypatch)
    runs = {}
    for settle in (0.0, 0.2):
        cache = FeatureCache()
        settings = PropagationSettings(settle=settle)
        first = propagate(lab, frames, {0: gt[0]}, cache=cache, video_key="v", settings=settings)
        n_first = len(calls)
        start, stop = affected_range([0], 8, len(frames))
        again = propagate(lab, frames, {0: gt[0], 8: gt[8]}, cache=cache, video_key="v",
                          settings=settings, start=start, stop=stop)
        runs[settle] = (first.labels, again.labels, n_first, len(calls) - n_first)
        calls.clear()
    (first0, again0, n0, re0), (first1, again1, n1, re1) = runs[0.0], runs[0.2]
    assert n0 == n1 and np.array_equal(first0, first1)     # a first run reuses nothing
    assert re1 < re0                                        # the re-run stopped early
    # after settling, the forward chain from 8 gives the first run's labels
    assert np.array_equal(again1[-3:], first1[-3:])
    assert (again1[-3:] == again0[-3:]).mean() > 0.99


def test_a_first_run_between_keyframes_reuses_nothing(lab, monkeypatch):
    # with a cache but nothing kept from an earlier run, every frame is computed
    frames, gt = moving_squares(t=16)
    calls = _counting_attend(monkeypatch)
    out = {}
    for settle in (0.0, 0.5):
        out[settle] = propagate(lab, frames, {0: gt[0], 8: gt[8], 15: gt[15]}, cache=FeatureCache(),
                                settings=PropagationSettings(settle=settle)).labels
        out[settle, "calls"] = len(calls)
        calls.clear()
    assert out[0.0, "calls"] == out[0.5, "calls"]
    assert np.array_equal(out[0.0], out[0.5])
