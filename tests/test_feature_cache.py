"""FeatureCache: LRU by bytes, keys (video, frame, model, size), and the engine using it
so that a re-run only encodes frames it never saw."""
import dataclasses

import numpy as np
import pytest
import torch

from corrflow_napari.feature_cache import FeatureCache, FrameEncoder, model_key, video_key
from corrflow_napari.propagation import PropagationSettings, affected_range, propagate
from tests.test_propagation import moving_squares


class CountingFrames:
    """A (T, H, W, 3) video that records which frames were read (= encoded)."""

    def __init__(self, frames):
        self.frames, self.shape, self.reads = frames, frames.shape, []

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, t):
        self.reads.append(t)
        return self.frames[t]


def test_lru_bounded_by_bytes():
    one = torch.zeros(250)                       # 1000 bytes
    cache = FeatureCache(max_bytes=2500)
    cache.put(("v", 0), one)
    cache.put(("v", 1), one.clone())
    assert cache.get(("v", 0)) is one            # 0 is now the most recently used
    cache.put(("v", 2), one.clone())             # over 2500: the least recent (1) goes
    assert ("v", 1) not in cache and ("v", 0) in cache and ("v", 2) in cache
    assert cache.nbytes == 2000 and len(cache) == 2
    assert (cache.hits, cache.misses) == (1, 0)
    assert cache.get(("v", 1)) is None and cache.misses == 1
    cache.put(("big", 0), torch.zeros(1000))     # larger than the cache: not stored
    assert ("big", 0) not in cache and cache.nbytes == 2000
    cache = FeatureCache(max_bytes=10_000)
    for key in (("v", 0), ("w", 0), ("v", 3, "model", (8, 8), "side")):   # the last: a
        cache.put(key, one.clone())                                      # chain's values
    assert list(cache.values_of("v")) == [("v", 3, "model", (8, 8), "side")]
    assert cache.drop("v", features=False) == 1 and ("v", 0) in cache
    assert cache.drop("v") == 1 and cache.nbytes == 1000 and ("w", 0) in cache
    with pytest.raises(ValueError):
        FeatureCache(max_bytes=-1)
    assert 2 * 1024 ** 3 <= FeatureCache().max_bytes <= 16 * 1024 ** 3   # by the RAM


def test_second_run_encodes_only_frames_it_never_saw(lab):
    frames, gt = moving_squares(t=12)
    video = CountingFrames(frames)
    cache = FeatureCache()
    first = propagate(lab, video, {0: gt[0]}, stop=8, cache=cache, video_key="clip")
    assert sorted(video.reads) == list(range(8))          # each frame once
    video.reads.clear()
    keys = {0: gt[0], 6: gt[6]}
    start, stop = affected_range(keys, 6, 12)
    second = propagate(lab, video, keys, start=start, stop=stop, cache=cache,
                       video_key="clip")
    assert sorted(video.reads) == [8, 9, 10, 11]          # only the frames never seen
    assert cache.hits > 0
    # the cache changes nothing but the time
    plain = propagate(lab, frames, keys)
    np.testing.assert_array_equal(second.labels[1:], plain.labels[1:])
    np.testing.assert_array_equal(first.labels[:8], propagate(lab, frames, {0: gt[0]},
                                                              stop=8).labels[:8])


def test_batched_encoding_reads_each_frame_once_and_changes_nothing(lab, request):
    """On accelerators a chain's frames are encoded several at a time (FrameEncoder.plan);
    made to happen on the CPU here."""
    frames, gt = moving_squares(t=12)
    keys = {0: gt[0], 9: gt[9]}
    plain = propagate(lab, frames, keys, settings=PropagationSettings(scale=0.75))
    batches = request.getfixturevalue("batched_encoding")     # from here on
    video = CountingFrames(frames)
    batched = propagate(lab, video, keys, settings=PropagationSettings(scale=0.75))
    assert sorted(video.reads) == list(range(12))          # each frame once
    assert max(batches) == FrameEncoder.batch and sum(batches) == 12
    np.testing.assert_array_equal(batched.labels, plain.labels)
    np.testing.assert_allclose(batched.object_confidence, plain.object_confidence, atol=1e-5)


def test_cache_is_missed_when_the_model_or_scale_changes(lab):
    from corrflow_napari.model import load_model
    frames, gt = moving_squares(t=5)
    video = CountingFrames(frames)
    cache = FeatureCache()
    propagate(lab, video, {0: gt[0]}, cache=cache, video_key="clip")
    video.reads.clear()
    propagate(lab, video, {0: gt[0]}, cache=cache, video_key="clip")
    assert video.reads == []                              # same model: all cached
    other = load_model("lab", device="cpu")               # same weights: same key
    assert model_key(other) == model_key(lab)
    other.inference = dataclasses.replace(other.inference, temperature=0.1)
    assert model_key(other) != model_key(lab)             # inference settings
    propagate(other, video, {0: gt[0]}, cache=cache, video_key="clip")
    assert sorted(video.reads) == list(range(5))
    video.reads.clear()
    propagate(lab, video, {0: gt[0]}, cache=cache, video_key="clip",
              settings=PropagationSettings(scale=0.75))
    assert sorted(video.reads) == list(range(5))          # another working size


def test_model_key_follows_the_weights():
    from corrflow_napari.model import CorrFlowModel, EncoderConfig
    model = CorrFlowModel(EncoderConfig(width=0.125))
    key = model_key(model)
    assert key == model_key(model) and key.startswith("corrflow:")
    with torch.no_grad():
        next(model.parameters()).add_(1.0)                # e.g. fine-tuned in place
    assert model_key(model) != key


def test_default_video_key_tells_videos_apart():
    a = np.zeros((3, 8, 8, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255
    assert video_key(a) == video_key(a)
    assert video_key(a) != video_key(b)                   # another object and pixels
    assert video_key(a)[2] == (3, 8, 8, 3)


def test_rerun_reuses_unchanged_chains(lab, monkeypatch):
    # keyframes 0 and 10, then a correction at 5: the forward chain from 0 over 1-4 and
    # the backward chain from 10 over 9-6 are taken from the cache; only the new chains
    # from 5 run the attention (8 passes, not 16), with the same labels as a fresh run
    # (settle 0: the new chains run to the end; settling is tests/test_chain_reuse.py).
    from corrflow_napari import propagation
    exact = PropagationSettings(settle=0)
    frames, gt = moving_squares(t=12)
    cache = FeatureCache()
    keys = {0: gt[0], 10: gt[10]}
    propagate(lab, frames, keys, cache=cache, video_key="clip", settings=exact)
    chains = cache.values_of("clip").values()          # soft labels kept at half precision
    assert len(chains) == 9 + 9 + 1 and all(v.dtype == torch.float16 for v in chains)
    keys[5] = gt[5]
    start, stop = affected_range(keys, 5, 12)
    real_attend, calls = propagation.attend, []
    monkeypatch.setattr(propagation, "attend",
                        lambda *a, **kw: calls.append(1) or real_attend(*a, **kw))
    again = propagate(lab, frames, keys, start=start, stop=stop, cache=cache,
                      video_key="clip", settings=exact)
    assert (start, stop) == (1, 10) and len(calls) == 8
    fresh = propagate(lab, frames, keys, settings=exact)
    np.testing.assert_array_equal(again.labels[1:10], fresh.labels[1:10])
    np.testing.assert_allclose(again.confidence[1:10], fresh.confidence[1:10])


def test_a_videos_batchnorm_statistics_are_measured_once_and_shared(monkeypatch):
    """With ``bn_frames`` every frame of a video is normalised with statistics interpolated
    in time between that many evenly spaced frames: measured at the first encoding, kept
    in the cache, the same whichever frame is encoded first, and in the accelerators'
    batches."""
    from corrflow_napari.model import CorrFlowModel, EncoderConfig, InferenceSettings
    torch.manual_seed(0)
    model = CorrFlowModel(EncoderConfig(width=0.125), inference=InferenceSettings(
        frame_bn=True, bn_frames=3)).eval()
    frames, _ = moving_squares(t=9)
    frames[5] //= 2                                       # a darker frame
    video, cache = CountingFrames(frames), FeatureCache()
    first = FrameEncoder(model, video, 1.0, cache=cache, video_key="clip")
    f5 = first(5)
    assert sorted(video.reads) == [0, 4, 5, 8]            # the three measured, then frame 5
    video.reads.clear()
    f4 = first(4)                        # a sampled frame: its features kept from the measuring
    assert video.reads == [] and first.count == 4
    torch.testing.assert_close(f4, model.encode(frames[4:5])[0], rtol=1e-4, atol=1e-4)
    sampled = model.video_statistics(frames[[0, 4, 8]])            # rows of frames 0, 4, 8
    at5 = [(0.75 * m[1:2] + 0.25 * m[2:3], 0.75 * v[1:2] + 0.25 * v[2:3]) for m, v in sampled]
    torch.testing.assert_close(f5, model.encode(frames[5:6], bn_stats=at5)[0])
    at4 = [(m[1:2], v[1:2]) for m, v in sampled]                    # a sampled frame: its own
    torch.testing.assert_close(model.encode(frames[4:5], bn_stats=at4),
                               model.encode(frames[4:5]), rtol=1e-4, atol=1e-4)
    video.reads.clear()
    f2 = FrameEncoder(model, video, 1.0, cache=cache, video_key="clip")(2)
    assert video.reads == [2]                             # the statistics came from the cache
    torch.testing.assert_close(f2, FrameEncoder(model, frames, 1.0)(2))
    monkeypatch.setattr(FrameEncoder, "unbatched", ())    # batches, as on a GPU
    batched = FrameEncoder(model, frames, 1.0, cache=FeatureCache(), video_key="clip")
    batched.plan([5, 6, 7])
    torch.testing.assert_close(batched(5), f5, rtol=1e-4, atol=1e-4)
    assert batched.key(7) in batched.cache               # encoded in frame 5's batch
    torch.testing.assert_close(batched(6), FrameEncoder(model, frames, 1.0)(6),
                               rtol=1e-4, atol=1e-4)
    own = model.encode(frames[5:6])[0]                    # without: the frame's own
    assert not torch.allclose(f5, own, atol=1e-3)
    model.inference = dataclasses.replace(model.inference, bn_frames=0)
    torch.testing.assert_close(FrameEncoder(model, frames, 1.0)(5), own)


def test_resizing_through_a_reused_buffer_gives_the_same_frames():
    from corrflow_napari.feature_cache import resize_rgb8
    gen = torch.Generator().manual_seed(0)
    buffer = torch.empty(1, 3, 90, 160)
    for _ in range(2):                                    # the buffer written over
        x = torch.randint(0, 256, (1, 90, 160, 3), dtype=torch.uint8, generator=gen)
        assert torch.equal(resize_rgb8(x, (36, 64), buffer), resize_rgb8(x, (36, 64)))
