"""Propagation engine: ids, keyframes, directions, cancel, progress, out-of-memory
retries, the Lab mixture and the user-facing settings (keypoints: test_tracking.py)."""
import threading
from dataclasses import replace

import numpy as np
import pytest

from corrflow_napari.errors import InputError
from corrflow_napari.options import options
from corrflow_napari.propagation import (
    PropagationSettings,
    propagate,
    propagate_labels,
    propagate_values,
)


def moving_squares(t=12, h=64, w=80, step=2):
    """Two coloured squares (ids 3 and 7) moving right by ``step`` px/frame on grey."""
    frames = np.full((t, h, w, 3), 90, np.uint8)
    labels = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        x = 8 + step * i
        frames[i, 10:26, x:x + 16] = (230, 40, 40)
        labels[i, 10:26, x:x + 16] = 3
        frames[i, 36:54, x + 10:x + 28] = (40, 60, 230)
        labels[i, 36:54, x + 10:x + 28] = 7
    return frames, labels


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_ids_preserved_and_objects_followed(lab):
    frames, gt = moving_squares()
    out = propagate_labels(lab, frames, {0: gt[0]})
    assert out.shape == gt.shape and out.dtype == np.uint8
    assert set(np.unique(out)) == {0, 3, 7}
    np.testing.assert_array_equal(out[0], gt[0])
    for i in range(1, len(gt)):
        for obj in (3, 7):
            assert iou(out[i] == obj, gt[i] == obj) > 0.8, (i, obj)


def test_skipping_tiles_far_from_objects_changes_nothing(lab, monkeypatch):
    """skip_far (the CPU default; off on GPUs) only leaves out work whose result is known."""
    from corrflow_napari.model import attention
    frames, gt = moving_squares(step=3)
    keys = {0: gt[0], 11: gt[11]}
    spans, calls = attention._active_spans, []
    monkeypatch.setattr(attention, "_active_spans", lambda *a: calls.append(1) or spans(*a))
    on = propagate(lab, frames, keys, settings=PropagationSettings(skip_far=True))
    assert calls, "skip_far=True did not skip"
    calls.clear()
    off = propagate(lab, frames, keys, settings=PropagationSettings(skip_far=False))
    assert not calls
    np.testing.assert_array_equal(on.labels, off.labels)
    np.testing.assert_allclose(on.object_confidence, off.object_confidence, atol=1e-5)
    assert on.labels[5].any() and np.isfinite(on.object_confidence[1:11]).all()


def test_backward_from_last_frame(lab):
    frames, gt = moving_squares()
    out = propagate_labels(lab, frames, {len(gt) - 1: gt[-1]})
    np.testing.assert_array_equal(out[-1], gt[-1])
    for i in range(len(gt) - 1):
        assert iou(out[i] == 3, gt[i] == 3) > 0.8


def test_keyframe_correction_is_honoured(lab):
    # One-sided schedule (fusion="one-sided"): a correction reaches forward only.
    # Two-sided, it reaches back as well: tests/test_two_sided.py.
    frames, gt = moving_squares()
    wrong = gt[0].copy()
    wrong[wrong == 7] = 0                     # frame 0 forgets object 7
    out = propagate_labels(lab, frames, {0: wrong, 6: gt[6]},
                           settings=PropagationSettings(fusion="one-sided"))
    assert not (out[1:6] == 7).any()           # before the correction: no object 7
    np.testing.assert_array_equal(out[6], gt[6])
    for i in range(7, len(gt)):                # after: object 7 follows the correction
        assert iou(out[i] == 7, gt[i] == 7) > 0.8


def test_large_ids_and_many_objects(lab):
    h, w = 48, 64
    frame = np.full((h, w, 3), 60, np.uint8)
    mask = np.zeros((h, w), np.int64)
    rng = np.random.default_rng(1)
    for k in range(10):
        sl = np.s_[(k // 5) * 24 + 4:(k // 5) * 24 + 20, (k % 5) * 12 + 1:(k % 5) * 12 + 11]
        mask[sl] = 300 + k
        frame[sl] = rng.integers(0, 256, 3)
    frames = np.repeat(frame[None], 4, axis=0)
    out = propagate_labels(lab, frames, {1: mask})
    assert out.dtype == np.uint16
    assert set(np.unique(out[3])) <= set(np.unique(mask))
    assert iou(out[3] == 305, mask == 305) > 0.7


def test_each_frame_encoded_once_and_progress(lab):
    frames, gt = moving_squares(t=10)
    seen, encoded = [], []
    calls = []

    class Counting:
        shape = frames.shape

        def __len__(self):
            return len(frames)

        def __getitem__(self, t):
            encoded.append(t)
            return frames[t]

    # two-sided: frames 4-6 take two attention passes (forward from 3, backward from 7)
    # but each frame is still encoded once (the run's private feature cache)
    for fusion, steps in (("distance", 11), ("one-sided", 8)):
        seen.clear(), encoded.clear(), calls.clear()
        out = propagate_labels(lab, Counting(), {3: gt[3], 7: gt[7]},
                               progress=lambda d, n: calls.append((d, n)),
                               on_frame=lambda t, lab_t: seen.append(t),
                               settings=PropagationSettings(fusion=fusion))
        assert sorted(encoded) == list(range(10))
        assert sorted(seen) == [t for t in range(10) if t not in (3, 7)]
        assert calls[0] == (0, steps) and calls[-1] == (steps, steps)
        np.testing.assert_array_equal(out[7], gt[7])

    # labels handed to on_frame only (the dock's Labels layer, the CLI's PNGs): the same
    got = {}
    res = propagate(lab, frames, {3: gt[3], 7: gt[7]}, keep_labels=False,
                    on_frame=lambda t, lab_t: got.setdefault(t, lab_t))
    assert res.labels is None and not np.isnan(res.confidence).any()
    for t, lab_t in got.items():
        np.testing.assert_array_equal(lab_t, out[t])


def test_cancel_keeps_finished_frames(lab):
    frames, gt = moving_squares(t=12)
    cancel = threading.Event()
    done = []

    def on_frame(t, lab_t):
        done.append(t)
        if len(done) == 4:
            cancel.set()

    out = propagate_labels(lab, frames, {0: gt[0]}, cancel=cancel, on_frame=on_frame)
    assert done == [1, 2, 3, 4]
    assert (out[5:] == 0).all() and (out[1:5] > 0).any()


def test_range_and_direction(lab):
    frames, gt = moving_squares(t=12)
    seen = []
    propagate_labels(lab, frames, {0: gt[0], 5: gt[5], 9: gt[9]}, start=5, stop=9,
                     direction="forward", on_frame=lambda t, x: seen.append(t))
    assert seen == [6, 7, 8]
    seen.clear()
    propagate_labels(lab, frames, {5: gt[5]}, direction="backward",
                     on_frame=lambda t, x: seen.append(t))
    assert seen == [4, 3, 2, 1, 0]


def test_odd_sizes_tiny_objects_and_single_frame(lab, texture):
    frames = np.repeat(texture(37, 53).astype(np.uint8)[None], 3, axis=0)
    mask = np.zeros((37, 53), np.uint8)
    mask[20, 30] = 1                           # a 1x1 object
    out = propagate_labels(lab, frames, {0: mask})
    assert out.shape == (3, 37, 53)
    single = propagate_labels(lab, frames[:1], {0: mask})
    np.testing.assert_array_equal(single[0], mask)


def test_scale_option(lab):
    frames, gt = moving_squares()
    out = propagate_labels(lab, frames, {0: gt[0]}, settings=PropagationSettings(scale=0.5))
    assert out.shape == gt.shape
    assert iou(out[5] == 3, gt[5] == 3) > 0.6


@pytest.mark.parametrize("keyframes,match", [
    ({}, "no keyframe"),
    ({0: np.zeros((64, 80), np.uint8)}, "no object"),
    ({0: np.ones((10, 10), np.uint8)}, "video frames are 80x64"),
    ({0: np.ones((64, 80, 3), np.uint8)}, r"shape \(64, 80, 3\), not \(height, width\)"),
    ({40: np.ones((64, 80), np.uint8)}, "out of range"),
])
def test_bad_keyframes(lab, keyframes, match):
    frames, _ = moving_squares()
    with pytest.raises(InputError, match=match):
        propagate_labels(lab, frames, keyframes)


def test_propagate_values_seed_passthrough(lab):
    frames, _ = moving_squares(t=5)
    import torch
    seed = torch.rand(2, 16, 20)
    got = {}
    n = propagate_values(lab, frames, {2: seed}, lambda t, v: got.setdefault(t, v))
    assert sorted(got) == [0, 1, 3, 4] and n == 5
    assert got[3].shape == (2, 16, 20)


def test_out_of_memory_in_attention_retries_with_smaller_chunks(lab, monkeypatch):
    # An accelerator running out of memory mid-video must not crash the run: the attention
    # is retried with fewer tiles at a time (same result), with one warning.
    import torch

    from corrflow_napari import propagation
    frames, gt = moving_squares()
    settings = PropagationSettings(chunk_tiles=16)
    expected = propagate_labels(lab, frames, {0: gt[0]}, settings=settings)
    real_attend, chunks = propagation.attend, []

    def attend_with_little_memory(*args, chunk_tiles=None, **kw):
        chunks.append(chunk_tiles)
        if chunk_tiles > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_attend(*args, chunk_tiles=chunk_tiles, **kw)

    monkeypatch.setattr(propagation, "attend", attend_with_little_memory)
    with pytest.warns(RuntimeWarning, match="out of memory.*retrying with 8 tiles") as record:
        out = propagate_labels(lab, frames, {0: gt[0]}, settings=settings)
    assert len(record) == 1
    np.testing.assert_array_equal(out, expected)
    assert chunks[:3] == [16, 8, 4] and set(chunks[3:]) == {4}   # the smaller size is kept

    def never_enough(*args, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(propagation, "attend", never_enough)
    with pytest.warns(RuntimeWarning), pytest.raises(torch.OutOfMemoryError):
        propagate_labels(lab, frames, {0: gt[0]}, settings=settings)


def test_lab_mixture_interpolates_between_learned_and_lab_affinities(lab, small_clip):
    # lab_mix = 1 is exactly the Lab baseline's attention, lab_mix = 0 exactly the learned
    # one (learned + Lab channels), and 0.5 the average of the two attentions.
    import torch

    from corrflow_napari.model import load_model
    frames, mask = small_clip
    frames, mask = frames[:5, :88], mask[:88]          # a multiple of 4: same feature grid
    seed = {0: torch.stack([torch.from_numpy((mask[1::4, 1::4] == v).astype(np.float32))
                            for v in (0, 1)])}

    def values(model):
        got = {}
        propagate_values(model, frames, seed, lambda t, v: got.setdefault(t, v),
                         settings=PropagationSettings(n_recent=0, min_mass=0))
        return torch.stack([got[t] for t in range(1, 5)])   # (min_mass: after the mixture)

    model = load_model(device="cpu")
    model.inference = replace(model.inference, lab_mix=0.0)
    learned = values(model)
    model.inference = replace(model.inference, lab_mix=1.0)
    assert [g.weight for g in model.affinity_groups()] == [1.0]
    half = 5e-4                         # soft labels are kept as float16 (an ulp or two)
    torch.testing.assert_close(values(model), values(lab), atol=half, rtol=0)
    model.inference = replace(model.inference, lab_mix=0.5)
    torch.testing.assert_close(values(model), 0.5 * learned + 0.5 * values(lab),
                               atol=half, rtol=0)
    assert not torch.allclose(learned, values(lab), atol=1e-2)   # the two really differ


def test_user_facing_propagation_options():
    assert [o.name for o in options(PropagationSettings)] == [
        "radius", "topk", "n_recent", "max_keyframes", "scale", "max_size", "fusion", "follow",
        "min_mass", "settle", "label_stride"]
    settle = {o.name: o for o in options(PropagationSettings)}["settle"]
    assert settle.kind is float and settle.default == 0.05 and settle.minimum == 0
    min_mass = {o.name: o for o in options(PropagationSettings)}["min_mass"]
    assert min_mass.kind is float and min_mass.default == 0.1 and min_mass.minimum == 0
    follow = {o.name: o for o in options(PropagationSettings)}["follow"]
    assert follow.kind is bool and follow.default is True
    fusion = {o.name: o for o in options(PropagationSettings)}["fusion"]
    assert fusion.default == "distance" and "one-sided" in fusion.choices
    topk = {o.name: o for o in options(PropagationSettings)}["topk"]
    assert topk.optional and topk.default == 10
    stride = {o.name: o for o in options(PropagationSettings)}["label_stride"]
    assert stride.kind is int and stride.choices == (4, 2, 1) and stride.optional


def test_faint_object_probabilities_go_to_the_background():
    import torch

    from corrflow_napari.confidence import drop_faint
    vals = torch.tensor([[0.5, 0.985, 1.0], [0.495, 0.005, 0.0], [0.005, 0.01, 0.0]])[:, None]
    out = drop_faint(vals.clone(), 0.01)
    assert torch.allclose(out[:, 0, 0], torch.tensor([0.505, 0.495, 0.0]))
    assert torch.allclose(out[:, 0, 1], torch.tensor([0.99, 0.0, 0.01]))
    assert torch.allclose(out.sum(0), vals.sum(0))
    assert torch.equal(drop_faint(vals.clone(), 0.0), vals)


def test_value_maps_that_are_not_label_probabilities_are_carried_unchanged(lab, small_clip):
    # a heatmap (one channel, not a distribution) must not meet min_mass or the skipping
    # of cells "far from every object": the default gives what min_mass = 0 gives, and its
    # faint tail (< 0.01) survives
    import torch

    frames, mask = small_clip
    frames = frames[:4, :88]
    yy, xx = torch.meshgrid(torch.arange(22.0), torch.arange(float(frames.shape[2] // 4)),
                            indexing="ij")
    heat = torch.exp(-((yy - 11) ** 2 + (xx - 20) ** 2) / 8.0)[None]
    runs = []
    for settings in (PropagationSettings(), PropagationSettings(min_mass=0)):
        got: dict = {}
        propagate_values(lab, frames, {0: heat}, lambda t, v, got=got: got.setdefault(t, v),
                         settings=settings)
        runs.append(torch.stack([got[t] for t in range(1, 4)]))
    assert torch.equal(runs[0], runs[1])
    assert ((runs[0] > 0) & (runs[0] < 0.01)).any()


def test_recycled_reference_tiles_change_nothing(lab, monkeypatch):
    """Propagation writes each new reference's tiles over those of one it no longer uses
    (keyframes, recent frames, moved keyframes): the same labels and confidences as with
    every reference tiled into new memory, two keyframes, both sides."""
    import corrflow_napari.model.tile_recycler as recycling
    frames, gt = moving_squares(t=14, step=3)
    keys = {0: gt[0], 13: gt[13]}
    recycled = propagate(lab, frames, keys)
    used = []
    original = recycling.prepare_reference

    def new_memory(*args, out=None, **kw):
        used.append(out is not None)
        return original(*args, **kw)

    monkeypatch.setattr(recycling, "prepare_reference", new_memory)
    fresh = propagate(lab, frames, keys)
    assert sum(used) > len(used) // 2        # most tiles were offered a released buffer
    np.testing.assert_array_equal(recycled.labels, fresh.labels)
    np.testing.assert_array_equal(recycled.confidence, fresh.confidence)
