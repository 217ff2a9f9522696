"""Property-based test of the propagation engine over random small inputs."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corrflow_napari.model import load_model
from corrflow_napari.propagation import PropagationSettings, propagate_labels

LAB = load_model("lab", device="cpu")


@st.composite
def videos_and_keyframes(draw):
    t = draw(st.integers(1, 5))
    h = draw(st.integers(1, 23))
    w = draw(st.integers(1, 23))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)
    ids = draw(st.lists(st.integers(1, 300), min_size=1, max_size=6, unique=True))
    key_ts = draw(st.lists(st.integers(0, t - 1), min_size=1, max_size=t, unique=True))
    keyframes = {}
    for k in key_ts:
        mask = np.zeros((h, w), np.int64)
        for obj in draw(st.lists(st.sampled_from(ids), max_size=len(ids), unique=True)):
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            y1, x1 = y0 + rng.integers(1, h + 1), x0 + rng.integers(1, w + 1)
            mask[y0:y1, x0:x1] = obj
        keyframes[k] = mask
    first = key_ts[0]
    if not any((m > 0).any() for m in keyframes.values()):
        keyframes[first][rng.integers(0, h), rng.integers(0, w)] = ids[0]
    direction = draw(st.sampled_from(["both", "forward", "backward"]))
    n_recent = draw(st.integers(0, 3))
    topk = draw(st.sampled_from([None, 1, 10]))
    return frames, keyframes, direction, PropagationSettings(n_recent=n_recent, topk=topk)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(videos_and_keyframes())
def test_propagation_never_crashes_and_keeps_keyframes(case):
    frames, keyframes, direction, cfg = case
    labels = propagate_labels(LAB, frames, keyframes, direction=direction, settings=cfg)
    t, h, w = frames.shape[:3]
    assert labels.shape == (t, h, w)
    allowed = set(np.unique(np.concatenate([m.ravel() for m in keyframes.values()]))) | {0}
    assert set(np.unique(labels)) <= allowed
    for k, m in keyframes.items():
        np.testing.assert_array_equal(labels[k], m)
