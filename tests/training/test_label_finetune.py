"""Label-aware fine-tuning: keyframe pairs, the label term, the held-out check."""
from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corrflow_napari.errors import InputError
from corrflow_napari.io.frame_subset import FrameSubset
from corrflow_napari.model import read_checkpoint
from corrflow_napari.model.encoder import EncoderConfig
from corrflow_napari.model.features import CorrFlowModel
from corrflow_napari.model.inference_settings import InferenceSettings
from corrflow_napari.propagation import propagate
from corrflow_napari.training import TrainConfig, finetune, step_rngs
from corrflow_napari.training.finetune import FinetuneResult
from corrflow_napari.training.finetune_check import (
    ColourForward,
    ColourRoundTrip,
    MaskRoundTrip,
    PropagationCrispness,
)
from corrflow_napari.training.label_objective import (
    KeyframeSet,
    LabelTerm,
    attend_as_inference,
    label_loss,
    round_trip,
)
from corrflow_napari.training.pseudo_keyframes import (
    PropagatedFrames,
    choose_frames,
    pseudo_keyframes,
)

SHIPPED_LIKE = InferenceSettings(metric="negsqdist", temperature=0.05, normalize=True,
                                 lab_weight=3.0, frame_bn=True, lab_mix=0.5)


def blob_video(texture, t=10, h=64, w=96):
    """A textured background and a textured disc (object 1) moving 2 px a frame; the
    disc's texture differs from the background's but shares its colours."""
    bg = texture(h, w + 2 * t, seed=1)
    fg = texture(h, w + 2 * t, seed=2)[:, ::-1]
    yy, xx = np.mgrid[:h, :w]
    frames, masks = [], []
    for k in range(t):
        disc = (yy - h / 2) ** 2 + (xx - 24 - 2 * k) ** 2 < 14 ** 2
        img = np.where(disc[..., None], fg[:, k:k + w], bg[:, k:k + w])
        frames.append(img.round().astype(np.uint8))
        masks.append(disc.astype(np.int32))
    return np.stack(frames), np.stack(masks)


def small_model(seed=0, inference=SHIPPED_LIKE):
    torch.manual_seed(seed)
    model = CorrFlowModel(EncoderConfig(width=0.25), inference=inference)
    model.centroids.copy_(torch.linspace(-40, 40, 32).view(16, 2))
    return model


def flat_model():
    """Constant learned features and no Lab colour: every pixel attends to all alike."""
    model = small_model(inference=InferenceSettings(metric="negsqdist", temperature=0.05,
                                                    normalize=True))
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.zero_()
    return model


def small_config(**kw):
    base = dict(crop=32, batch=1, centroid_clips=2, mean_window=2, interval=1, log_every=1000)
    base.update(kw)
    return TrainConfig.finetune(**base)


TERM = LabelTerm(crop=32, copies_batch=1, cycle_batch=1, cycle_span=4)


def test_keyframe_pairs_shapes_ids_and_between(texture):
    frames, masks = blob_video(texture)
    two = {0: masks[0], 6: masks[6] * 5}            # object ids 1 and 5 -> classes 1, 2
    ks = KeyframeSet(frames, two, LabelTerm(crop=32, jitter=0.0))
    assert ks.ids.tolist() == [0, 1, 5] and ks.n_classes == 3 and ks.times == [0, 6]
    gen = torch.Generator().manual_seed(0)
    for between in (False, True):
        pairs = ks.sample(4, np.random.default_rng(0), gen, between=between)
        for x in pairs:
            assert x.shape[0] == 4 and x.shape[-2:] == (32, 32)
        assert pairs.ref.shape[1] == 3 and pairs.ref_labels.shape[1] == 3
        torch.testing.assert_close(pairs.ref_labels.sum(1), torch.ones(4, 32, 32))
        for i in range(4):     # which object ids each side shows
            ref_cls = pairs.ref_labels[i, 1:].sum((1, 2)) > 1
            tgt_cls = pairs.tgt_labels[i, 1:].sum((1, 2)) > 1
            assert ref_cls.sum() <= 1 and tgt_cls.sum() <= 1
            if between:        # two different keyframes: never the same id
                assert not (ref_cls & tgt_cls).any()
            elif ref_cls.any() and tgt_cls.any():
                assert torch.equal(ref_cls, tgt_cls)
    with pytest.raises(InputError):
        KeyframeSet(frames, {0: masks[0]}).sample(1, np.random.default_rng(0), between=True)


def test_cycles_never_visit_the_held_out_frames(texture):
    frames, masks = blob_video(texture, t=12)
    ks = KeyframeSet(frames, {2: masks[2]}, LabelTerm(crop=32, cycle_span=6),
                     held_out={4, 6})
    assert ks.neighbours == [[[3, 5, 7, 8], [1, 0]]] and ks.has_cycles
    seen = set()
    real = ks.frame

    def spy(t):
        seen.add(t)
        return real(t)

    ks.frame = spy
    cyc = ks.sample_cycles(8, np.random.default_rng(1), torch.Generator().manual_seed(1))
    assert cyc.images.shape == (8, 3, 3, 32, 32) and cyc.labels.shape == (8, 2, 32, 32)
    assert seen and not seen & {4, 6} and seen <= {0, 1, 3, 5, 7, 8}
    alone = KeyframeSet(frames[:2], {0: masks[0]})      # too short to cycle
    assert not alone.has_cycles
    loss, parts = label_loss(small_model().train(), KeyframeSet(
        frames[:2], {0: masks[0]}, LabelTerm(crop=32)), np.random.default_rng(0))
    assert set(parts) == {"label_pairs"} and torch.isfinite(loss)


def test_keyframe_set_rejects_bad_masks(texture):
    frames, masks = blob_video(texture)
    for bad in ({}, {0: np.zeros_like(masks[0])}, {0: masks[0][:10]}, {99: masks[0]}):
        with pytest.raises(InputError):
            KeyframeSet(frames, bad)
    with pytest.raises(InputError):
        LabelTerm(crop=30)


def test_attention_matches_propagation_for_one_reference(texture):
    """The label term copies labels exactly as the propagation engine does."""
    from corrflow_napari.propagation import PropagationSettings, propagate_values
    frames, masks = blob_video(texture, t=2)
    # each frame normalised by its own statistics, as encode() without its video does
    model = small_model(inference=dataclasses.replace(SHIPPED_LIKE, bn_frames=0)).eval()
    feats = [model.encode(frames[t:t + 1])[0] for t in range(2)]
    seed = F.avg_pool2d(F.one_hot(torch.from_numpy(masks[0]).long(), 2).permute(2, 0, 1)
                        [None].float(), 4)[0]
    got = {}
    propagate_values(model, frames, {0: seed}, lambda t, v: got.setdefault(t, v),
                     settings=PropagationSettings(n_recent=0, max_size=0, radius=6,
                                                  min_mass=0),
                     direction="forward")
    mine = attend_as_inference(model, feats[1][None], feats[0][None], seed[None])[0]
    torch.testing.assert_close(mine, got[1], atol=5e-4, rtol=0)   # propagation keeps float16
    back = round_trip(model, [f[None] for f in feats], seed[None])
    assert len(back) == 1 and back[0].shape == (1,) + seed.shape


def test_label_loss_falls_on_a_synthetic_clip(texture):
    """Pairs and cycles on a moving textured disc: fine-tuning lowers the label term on
    the same fixed samples (no Lab-colour mixture here: its half of the copy is fixed)."""
    frames, masks = blob_video(texture)
    model = small_model(inference=InferenceSettings(metric="negsqdist", temperature=0.05,
                                                    normalize=True, frame_bn=True))
    ks = KeyframeSet(frames, {0: masks[0]}, TERM)
    assert ks.has_cycles

    def loss_of(m):      # the same samples (pairs and cycles) every time
        m.train()        # frame_bn: per-image statistics, as in training and inference
        with torch.no_grad():
            return float(np.mean([label_loss(m, ks, *step_rngs(123, 0, i))[0]
                                  for i in range(3)]))

    painted_only = dataclasses.replace(TERM, pseudo_keyframes=0)   # the samples above
    res = finetune(model, frames, iters=60, keyframes={0: masks[0]}, label_term=painted_only,
                   config=small_config(lr=3e-3), check=False)
    assert res.labelled == [0] and res.steps == 60 and not res.kept_start
    assert loss_of(res.model) < 0.7 * loss_of(model)


def test_check_keeps_the_starting_weights_when_training_diverges(texture, tmp_path):
    frames, masks = blob_video(texture)
    model = small_model()
    start = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    out = tmp_path / "ft.pt"
    res = finetune(model, frames, iters=3, keyframes={0: masks[0]}, label_term=TERM,
                   config=small_config(lr=10.0), out=out)
    assert isinstance(res, FinetuneResult)
    assert res.kept_start and res.check_after < res.check_before
    assert "did not improve" in res.summary() and "painted masks" in res.check
    for k, v in res.model.encoder.state_dict().items():
        assert torch.equal(v, start[k]), k
    saved = read_checkpoint(out)          # the file holds the kept (starting) weights
    assert saved["finetune_check"]["kept_start"] is True
    for k, v in start.items():
        assert torch.equal(saved["encoder"][k], v), k


def test_check_scores_the_model_as_propagation_uses_it(texture):
    frames, masks = blob_video(texture)
    good = small_model()
    check = MaskRoundTrip(frames, {0: masks[0]}, step=2)
    assert check and check.chains == [[0, 2, 4]]
    s = check.score(good.eval())
    assert 0 < s <= 1
    # a model whose features are constant copies the mean label: worse than the texture
    flat = flat_model()
    assert check.score(flat.eval()) < s
    # near the end of the video the chain runs backwards
    assert MaskRoundTrip(frames, {9: masks[9]}, step=2).chains == [[9, 7, 5]]


def test_forward_colour_guard_scores_prediction_not_round_trips(texture):
    frames, _ = blob_video(texture, t=12)
    guard = ColourForward(frames, step=2)
    assert guard.pairs == [(0, 2), (3, 5), (6, 8), (9, 11)]       # spread over the video
    assert ColourForward(frames, step=2, span=(9, 11)).pairs == [(9, 11)]
    good = small_model().eval()
    s = guard.score(good)
    assert 0 < s <= 1
    # constant learned features and no colour group: every pixel gets the frame's mean
    # colour distribution, far from each pixel's own colour
    flat = flat_model()
    assert guard.score(flat.eval()) < s - 0.05
    # a still video: the prediction of each frame from an identical one is near perfect
    still = np.repeat(frames[:1], 6, axis=0)
    assert ColourForward(still, step=1).score(good) > s


def finetune_scored(texture, monkeypatch, model, check_scores, guard_scores):
    """Label-aware fine-tuning of ``model`` for 2 steps with the round trip and the guard
    made to return the given (before, after) scores."""
    frames, masks = blob_video(texture)
    ft_module = importlib.import_module("corrflow_napari.training.finetune")
    checks, guards = iter(check_scores), iter(guard_scores)
    monkeypatch.setattr(ft_module.MaskRoundTrip, "score", lambda self, m: next(checks))
    monkeypatch.setattr(ft_module.PropagationCrispness, "crispness",
                        lambda self, seen: next(guards))
    return finetune(model, frames, iters=2, keyframes={0: masks[0]}, label_term=TERM,
                    config=small_config(lr=1e-2))


def test_guard_getting_worse_keeps_the_starting_weights(texture, monkeypatch):
    """The mask round trip improves but the propagated masks get blurrier (what label
    fine-tuning did on dev sequences whose J&F fell): the starting weights are kept, and
    said so."""
    model = small_model()
    start = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    res = finetune_scored(texture, monkeypatch, model, [0.5, 0.6], [0.8, 0.7])
    assert (res.check_before, res.check_after) == (0.5, 0.6)
    assert (res.guard_before, res.guard_after) == (0.8, 0.7) and "crispness" in res.guard
    assert res.kept_start and "guard got worse (0.800 -> 0.700" in res.summary()
    for k, v in res.model.encoder.state_dict().items():
        assert torch.equal(v, start[k]), k


def test_colour_only_holds_the_end_of_the_video_out(texture, monkeypatch):
    frames, _ = blob_video(texture, t=30)
    head = FrameSubset(frames, range(27))
    assert len(head) == 27 and head[26] is not None
    with pytest.raises(IndexError):
        head[27]
    seen = []
    ft_module = importlib.import_module("corrflow_napari.training.finetune")
    real = ft_module.ColourRoundTrip

    def spy(frames_, held_out, step, settings=None):
        seen.append(held_out)
        return real(frames_, held_out, step, settings)

    monkeypatch.setattr(ft_module, "ColourRoundTrip", spy)
    res = finetune(small_model(), frames, iters=2, config=small_config())
    assert seen == [[27, 28, 29]]
    assert res.check.startswith("colours") and res.check_before is not None
    assert res.labelled == [] and res.seconds_per_step > 0
    assert ColourRoundTrip(frames, [27, 28, 29], step=1).chain == [27, 28, 29]


def test_no_check_on_a_very_short_video(texture):
    frames, _ = blob_video(texture, t=4)
    res = finetune(small_model(), frames, iters=1, config=small_config())
    assert res.check_before is None and not res.kept_start and res.check == ""
    assert "no held-out check" in res.summary()


def test_norm_params_train_only_the_one_dimensional_weights(texture):
    """params="norm": the normalisation scales and shifts (and biases) move, the
    convolution kernels stay exactly as they were, and the label loss still falls."""
    frames, masks = blob_video(texture)
    model = small_model(inference=InferenceSettings(metric="negsqdist", temperature=0.05,
                                                    normalize=True, frame_bn=True))
    start = {k: v.clone() for k, v in model.encoder.named_parameters()}
    res = finetune(model, frames, iters=20, keyframes={0: masks[0]}, label_term=TERM,
                   config=small_config(lr=3e-2, params="norm"), check=False)
    after = dict(res.model.encoder.named_parameters())
    moved = {k for k, v in start.items() if not torch.equal(after[k], v)}
    assert moved and all(start[k].ndim == 1 for k in moved)
    assert any(k.endswith("weight") for k in moved)          # the BatchNorm scales
    assert all(torch.equal(after[k], v) for k, v in start.items() if v.ndim > 1)
    with pytest.raises(InputError, match="params"):
        TrainConfig.finetune(params="kernels")


def test_crispness_guard_propagates_the_keyframes_and_falls_when_masks_blur(texture):
    """The guard propagates the painted frame through (a subset of) the video as the user
    will and scores the mean soft IoU of the propagated frames: a softer attention (a
    high temperature) blurs the masks and scores lower."""
    frames, masks = blob_video(texture, t=12)
    guard = PropagationCrispness(frames, {4: masks[4]}, max_frames=5)
    assert guard.frames.times == [0, 3, 4, 6, 9] and guard.keyframes.keys() == {2}
    assert isinstance(guard.frames, FrameSubset) and guard.frames.shape == (5, 64, 96, 3)
    assert np.array_equal(guard.frames[2], frames[4])

    def model(temperature):
        return small_model(inference=InferenceSettings(
            metric="negsqdist", temperature=temperature, normalize=True)).eval()

    sharp = guard.score(model(0.01))
    res = propagate(model(0.01), frames[[0, 3, 4, 6, 9]], {2: masks[4]})
    assert sharp == pytest.approx(np.mean(res.measures["soft_iou"][[0, 1, 3, 4]]))
    assert 0 < sharp <= 1 and guard.score(model(10.0)) < sharp - 0.03
    assert not PropagationCrispness(frames[:1], {0: masks[0]})   # nothing to propagate to


def test_check_and_guard_both_pass_keeps_the_fine_tuned_weights(texture, monkeypatch):
    model = small_model()
    res = finetune_scored(texture, monkeypatch, model, [0.5, 0.6], [0.7, 0.8])
    assert not res.kept_start
    assert "guard did not get worse (0.700 -> 0.800, painted masks propagated" in res.summary()
    assert any(not torch.equal(a, b) for a, b in zip(res.model.encoder.parameters(),
                                                     model.encoder.parameters()))


def test_pseudo_keyframes_one_confident_frame_per_window():
    """Windows around the inner boundaries of count + 1 equal parts; in each the most
    confident propagated frame that is not skipped (keyframes, the check's frames)."""
    times = list(range(0, 40, 2))
    conf = np.array([1.0] + [0.9 - 0.01 * i for i in range(1, 20)])
    conf[times.index(16)] = np.nan                               # not computed
    labels = {t: np.full((3, 4), t % 7, np.uint8) for t in times[1:]}
    seen = PropagatedFrames(times, conf, (6, 8), labels)
    # 40 frames, 3 windows: [5, 15), [15, 25), [25, 35)
    assert choose_frames(seen, 3, 40) == [6, 18, 26]
    assert choose_frames(seen, 3, 40, skip={6, 18}) == [8, 20, 26]
    assert choose_frames(seen, 0, 40) == [] and choose_frames(seen, 3, 2) == []
    out = pseudo_keyframes(seen, 1, 40)                          # one window: [10, 30)
    assert list(out) == [10] and out[10].shape == (6, 8) and (out[10] == 3).all()


def test_finetune_trains_on_confident_propagated_frames(texture):
    """With painted keyframes, fine-tuning adds pseudo-keyframes: frames the starting
    weights propagated, never the check's frames, labelled as that propagation labels
    them, and left out of the guard's score."""
    frames, masks = blob_video(texture, t=16)
    model = small_model()
    res = finetune(model, frames, iters=2, keyframes={0: masks[0]},
                   label_term=TERM, config=small_config(lr=1e-3))
    check = MaskRoundTrip(frames, {0: masks[0]}, step=1)
    assert res.labelled == [0] and len(res.pseudo) == 3
    assert not set(res.pseudo) & (check.frames_used | {0})
    guard = PropagationCrispness(frames, {0: masks[0]})
    seen = guard.propagate(model.eval())
    picked = pseudo_keyframes(seen, 3, len(frames), skip=check.frames_used | {0})
    assert sorted(picked) == res.pseudo
    t = res.pseudo[0]
    assert np.array_equal(picked[t], propagate(model, frames, {0: masks[0]}).labels[t])
    whole = guard.crispness(seen)
    guard.excluded = set(res.pseudo)
    rest = [i for i, t in enumerate(guard.times) if t not in res.pseudo and t != 0]
    assert guard.crispness(seen) == pytest.approx(np.nanmean(seen.soft_iou[rest]))
    assert guard.crispness(seen) != whole
    none = finetune(model, frames, iters=1, keyframes={0: masks[0]}, check=False,
                    label_term=dataclasses.replace(TERM, pseudo_keyframes=0),
                    config=small_config())
    assert none.pseudo == []
