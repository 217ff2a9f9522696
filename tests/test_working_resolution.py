"""Working resolution: frames matched at a short side of at most max_size, labels at full
size, the scale raised for small objects (synthetic microscopy-like blobs), the note."""
import warnings

import numpy as np
import pytest

from corrflow_napari.model import LabFeatures
from corrflow_napari.propagation import PropagationSettings, propagate_labels
from corrflow_napari.working_resolution import (
    MIN_CELLS,
    WorkingResolutionNote,
    object_sizes,
    working_scale,
)


def disc_mask(h, w, discs):
    """(H, W) ids: ``discs`` = [(id, cy, cx, diameter)]."""
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), np.uint8)
    for oid, cy, cx, d in discs:
        m[(yy - cy) ** 2 + (xx - cx) ** 2 <= (d / 2) ** 2] = oid
    return m


def blob_stack(t=3, size=2048, n=9, seed=0):
    """Bright discs 15-30 px across on a dark 2048 x 2048 stack, each moving up to 3
    px/frame (a fluorescence-microscopy-like video); (frames, labels) with ids 1..n."""
    rng = np.random.default_rng(seed)
    grid = int(np.ceil(np.sqrt(n)))
    cell = size // grid
    diam = np.concatenate([[15.0], rng.uniform(15, 30, n - 1)])
    vel = rng.uniform(-3, 3, (n, 2))
    frames = np.full((t, size, size, 3), 30, np.uint8)
    labels = np.zeros((t, size, size), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    for k in range(t):
        for i in range(n):
            cy = (i // grid + 0.5) * cell + vel[i, 0] * k
            cx = (i % grid + 0.5) * cell + vel[i, 1] * k
            y0, x0 = int(cy) - 32, int(cx) - 32
            disc = (yy + y0 - cy) ** 2 + (xx + x0 - cx) ** 2 <= (diam[i] / 2) ** 2
            frames[k, y0:y0 + 64, x0:x0 + 64][disc] = (200, 220, 120)
            labels[k, y0:y0 + 64, x0:x0 + 64][disc] = i + 1
    return frames, labels


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


class RecordingLab(LabFeatures):
    """Lab features that record the size of every frame they encode."""

    def __init__(self):
        super().__init__()
        self.sizes = set()

    def encode(self, frames):
        self.sizes.add(tuple(frames.shape[1:3]))
        return super().encode(frames)


# --------------------------------------------------------------------------- the rule
def test_short_side_capped_at_max_size():
    s = PropagationSettings()
    assert s.max_size == 480
    assert working_scale(s, 720, 1280) == (pytest.approx(480 / 720), None)
    assert working_scale(s, 1080, 1920)[0] == pytest.approx(480 / 1080)
    assert working_scale(s, 1920, 1080)[0] == pytest.approx(480 / 1080)   # portrait
    assert working_scale(s, 480, 854) == (1.0, None)          # DAVIS 480p: native
    assert working_scale(s, 180, 320) == (1.0, None)          # never upsampled
    native = PropagationSettings(max_size=0)
    assert working_scale(native, 2160, 3840) == (1.0, None)
    # the user's scale is a cap: the smaller of the two wins
    assert working_scale(PropagationSettings(scale=0.5), 720, 1280)[0] == 0.5
    assert working_scale(PropagationSettings(scale=0.9), 720, 1280)[0] == pytest.approx(2 / 3)


def test_object_sizes_ignore_specks_and_use_the_smallest_part():
    m = disc_mask(200, 200, [(1, 50, 50, 40), (2, 150, 150, 20)])
    m[190:192, 10:12] = 1                                      # a 4-pixel speck of object 1
    sizes = object_sizes({0: m})
    assert [(oid, t) for _, oid, t in sizes] == [(2, 0), (1, 0)]
    assert sizes[0][0] == pytest.approx(20, abs=1.5)
    assert sizes[1][0] == pytest.approx(40, abs=1.5)           # the speck is not its size
    two_cells = disc_mask(200, 200, [(1, 50, 50, 40), (1, 150, 150, 16)])   # one id, 2 parts
    assert object_sizes({3: two_cells})[0][0] == pytest.approx(16, abs=1.5)
    assert object_sizes({0: np.zeros((8, 8), np.uint8)}) == []


def test_small_objects_raise_the_scale_with_a_note():
    m = disc_mask(2048, 2048, [(1, 500, 500, 200), (2, 1500, 1500, 20)])
    scale, note = working_scale(PropagationSettings(), 2048, 2048, {0: m})
    need = MIN_CELLS * 4 / 20
    assert scale == pytest.approx(need, rel=0.05) and scale > 480 / 2048
    assert "object 2 (frame 0)" in note and "--max-size 0" in note and "\n" not in note
    big = disc_mask(2048, 2048, [(1, 500, 500, 200)])        # large objects: no raise
    assert working_scale(PropagationSettings(), 2048, 2048, {0: big}) == (480 / 2048, None)
    # an explicit --scale is not overridden, but the note says the object may be lost
    scale, note = working_scale(PropagationSettings(scale=0.25, max_size=0), 2048, 2048,
                                {0: m})
    assert scale == 0.25 and "may be lost" in note and "--scale" in note
    # never above the full size; the note says so
    tiny = disc_mask(256, 256, [(1, 100, 100, 6)])
    scale, note = working_scale(PropagationSettings(max_size=64), 256, 256, {0: tiny})
    assert scale == 1.0 and "still under" in note


# --------------------------------------------------------------------------- the engine
def test_small_moving_blobs_survive_on_a_2048_stack(lab):
    frames, gt = blob_stack()
    with pytest.warns(WorkingResolutionNote, match="matching at a short side of 16"):
        out = propagate_labels(lab, frames, {0: gt[0]})
    assert out.shape == gt.shape
    for oid in range(1, gt.max() + 1):
        assert iou(out[-1] == oid, gt[-1] == oid) > 0.6, oid
    # the same stack matched at a 480 short side, as without the rule: the blobs vanish
    forced = PropagationSettings(scale=480 / 2048, max_size=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkingResolutionNote)
        small = propagate_labels(lab, frames[:2], {0: gt[0]}, settings=forced)
    lost = sum(iou(small[1] == oid, gt[1] == oid) < 0.5 for oid in range(1, gt.max() + 1))
    assert lost >= gt.max() // 2


def moving_box_720p(t: int):
    """(frames, labels): a red 200 x 260 box (id 5) moving 12 px/frame on 1280 x 720."""
    frames = np.full((t, 720, 1280, 3), 90, np.uint8)
    labels = np.zeros((t, 720, 1280), np.uint8)
    for k in range(t):
        frames[k, 200:400, 300 + 12 * k:560 + 12 * k] = (230, 40, 40)
        labels[k, 200:400, 300 + 12 * k:560 + 12 * k] = 5
    return frames, labels


def test_720p_matched_at_480_and_returned_at_720p():
    h, w = 720, 1280
    frames, labels = moving_box_720p(3)
    model = RecordingLab()
    with warnings.catch_warnings():
        warnings.simplefilter("error", WorkingResolutionNote)   # no note for a large object
        out = propagate_labels(model, frames, {0: labels[0]})
    assert model.sizes == {(480, 853)}
    assert out.shape == (3, h, w) and set(np.unique(out)) == {0, 5}
    assert iou(out[2] == 5, labels[2] == 5) > 0.9
    native = RecordingLab()
    propagate_labels(native, frames[:2], {0: labels[0]},
                     settings=PropagationSettings(max_size=0))
    assert native.sizes == {(h, w)}


def test_a_sliver_on_a_correction_keyframe_keeps_the_working_resolution():
    """An object large on one keyframe and a sliver on a correction (partly hidden) keeps
    the video's working size: the re-run reuses the features (nothing is re-encoded
    larger) and no note is shown."""
    from corrflow_napari.feature_cache import FeatureCache
    from corrflow_napari.propagation import affected_range, propagate
    h, w = 720, 1280
    frames, labels = moving_box_720p(5)
    sliver = np.zeros((h, w), np.uint8)
    sliver[200:203, 600:603] = 5                           # 3 x 3 px: all that shows
    keys = {0: labels[0], 3: sliver}
    assert working_scale(PropagationSettings(), h, w, keys) == (480 / 720, None)
    assert [(oid, t) for _, oid, t in object_sizes(keys)] == [(5, 0)]
    assert working_scale(PropagationSettings(), h, w, {3: sliver})[0] == 1.0   # alone: raised
    model, cache = RecordingLab(), FeatureCache()
    propagate(model, frames, {0: labels[0]}, cache=cache, video_key="v")
    model.sizes.clear()
    start, stop = affected_range(keys, 3, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WorkingResolutionNote)
        propagate(model, frames, keys, start=start, stop=stop, cache=cache, video_key="v")
    assert model.sizes == set()                              # every feature from the cache


def test_tracking_uses_the_working_resolution():
    from corrflow_napari.tracking import track_points
    frames = np.full((2, 720, 1280, 3), 90, np.uint8)
    frames[:, 300:340, 600:640] = (230, 40, 40)
    model = RecordingLab()
    tracks = track_points(model, frames, np.array([[0, 320.0, 620.0]]))
    assert model.sizes == {(480, 853)}
    assert np.abs(tracks.positions[1, 0] - (320, 620)).max() < 8


def test_cli_prints_the_note_as_one_line(tmp_path, capsys):
    from PIL import Image

    from corrflow_napari.cli import main
    frames, gt = blob_stack(t=2, size=256, n=4)
    (tmp_path / "frames").mkdir()
    for k, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / "frames" / f"{k:05d}.png")
    Image.fromarray(gt[0]).save(tmp_path / "mask.png")
    code = main(["propagate", str(tmp_path / "frames"), "--mask", str(tmp_path / "mask.png"),
                 "--out", str(tmp_path / "out"), "--features", "lab", "--max-size", "64"])
    assert code == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "corrflow: note:" in ln]
    assert len(err) == 1 and "matching at a short side of" in err[0]
    assert Image.open(tmp_path / "out" / "00001.png").size == (256, 256)
