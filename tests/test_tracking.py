"""Keypoint tracking: synthetic motion tracked to < 1 px, points on several / non-zero
frames, bad input, and the settings (BADJA scoring is tested in
tests/evaluation/test_badja.py)."""
import numpy as np
import pytest
from scipy.ndimage import rotate, shift

from corrflow_napari.errors import InputError
from corrflow_napari.options import options
from corrflow_napari.propagation import PropagationSettings
from corrflow_napari.tracking import TrackSettings, track_points

# --------------------------------------------------------------------------- synthetic motion

H, W, T = 96, 128, 8
PAD = 40


def _points(n=10, seed=0, t=0):
    rng = np.random.default_rng(seed)
    return np.c_[np.full(n, t), rng.uniform(16, H - 16, n), rng.uniform(16, W - 16, n)]


def _translated(texture, dy=1.5, dx=-2.25):
    base = texture(H + 2 * PAD, W + 2 * PAD, seed=3)
    frames = np.stack([shift(base, (dy * i, dx * i, 0), order=3, mode="reflect")
                       [PAD:PAD + H, PAD:PAD + W] for i in range(T)])
    motion = np.arange(T)[:, None] * np.array([dy, dx])
    return frames.round().clip(0, 255).astype(np.uint8), motion


def test_translation_tracked_subpixel(lab, texture):
    frames, motion = _translated(texture)
    pts = _points()
    tracks = track_points(lab, frames, pts)
    assert tracks.positions.shape == (T, len(pts), 2) and tracks.visible.shape == (T, len(pts))
    expect = pts[None, :, 1:] + motion[:, None]
    err = np.linalg.norm(tracks.positions - expect, axis=-1)
    assert err.mean() < 1.0, err.mean(1)
    assert tracks.visible.all()


def test_batched_encoding_changes_no_track(lab, texture, request):
    """On accelerators each chain's frames are encoded several at a time (FrameEncoder.plan);
    made to happen on the CPU here."""
    frames, _ = _translated(texture)
    pts = np.r_[_points(n=4, seed=7, t=0), _points(n=3, seed=8, t=5)]
    plain = track_points(lab, frames, pts)
    batches = request.getfixturevalue("batched_encoding")     # from here on
    batched = track_points(lab, frames, pts)
    assert max(batches) > 1
    np.testing.assert_allclose(batched.positions, plain.positions, atol=1e-4)
    np.testing.assert_array_equal(batched.visible, plain.visible)


def test_rotation_tracked_subpixel(lab, texture):
    deg = 1.5                                            # per frame, about the centre
    base = texture(H + 2 * PAD, W + 2 * PAD, seed=4)
    frames = np.stack([rotate(base, deg * i, reshape=False, order=3, mode="reflect")
                       [PAD:PAD + H, PAD:PAD + W] for i in range(T)])
    frames = frames.round().clip(0, 255).astype(np.uint8)
    pts = _points(seed=1)
    cy, cx = (H - 1) / 2, (W - 1) / 2
    y, x = pts[:, 1] - cy, pts[:, 2] - cx
    a = np.deg2rad(deg * np.arange(T))[:, None]          # scipy: counter-clockwise on screen
    expect = np.stack([-np.sin(a) * x + np.cos(a) * y + cy, np.cos(a) * x + np.sin(a) * y + cx], -1)
    # top-10 matches (the masks' setting) interpolate below a pixel; the default top-3
    # trades some of that precision for robustness on real joints (README, Keypoints)
    precise = track_points(lab, frames, pts,
                           settings=TrackSettings(propagation=PropagationSettings(topk=10)))
    err = np.linalg.norm(precise.positions - expect, axis=-1)
    assert err.mean() < 1.0, err.mean(1)
    default = track_points(lab, frames, pts)
    err = np.linalg.norm(default.positions - expect, axis=-1)
    assert err.mean() < 1.5, err.mean(1)


def test_points_on_a_middle_frame_go_forward_and_backward(lab, texture):
    frames, motion = _translated(texture)
    t0 = 4
    pts = _points(seed=2, t=t0)
    tracks = track_points(lab, frames, pts)
    expect = pts[None, :, 1:] + (motion - motion[t0])[:, None]
    np.testing.assert_allclose(tracks.positions[t0], pts[:, 1:])
    err = np.linalg.norm(tracks.positions - expect, axis=-1)
    assert not np.isnan(tracks.positions).any()
    assert err[:t0].mean() < 1.0, err.mean(1)             # backward
    assert err[t0 + 1:].mean() < 1.0, err.mean(1)         # forward


def test_points_on_frames_0_and_3_at_once(lab, texture):
    frames, motion = _translated(texture)
    a, b = _points(n=4, seed=5, t=0), _points(n=3, seed=6, t=3)
    pts = np.concatenate([a, b])
    tracks = track_points(lab, frames, pts)
    start = np.where(pts[:, 0] == 0, 0, 3).astype(int)
    expect = pts[None, :, 1:] + motion[:, None] - motion[start][None]
    np.testing.assert_allclose(tracks.positions[0, :4], a[:, 1:])
    np.testing.assert_allclose(tracks.positions[3, 4:], b[:, 1:])
    err = np.linalg.norm(tracks.positions - expect, axis=-1)
    assert err[:, :4].mean() < 1.0 and err[:, 4:].mean() < 1.0, err.mean(0)


def test_object_mask_keeps_points_on_the_object(lab, texture):
    # a textured square moves right over a static texture; the mask says which is which
    frames, motion = _translated(texture, dy=0.0, dx=2.0)
    still = texture(H, W, seed=9).round().astype(np.uint8)
    mask = np.zeros((H, W), bool)
    mask[30:70, 40:90] = True
    out = []
    for i in range(T):
        f = still.copy()
        dx = int(motion[i, 1])
        f[30:70, 40 + dx:90 + dx] = frames[0][30:70, 40:90]
        out.append(f)
    video = np.stack(out)
    pts = np.array([[0, 40.0, 50.0], [0, 60.0, 80.0]])
    tracks = track_points(lab, video, pts, object_masks={0: mask})
    expect = pts[None, :, 1:] + motion[:, None]
    assert np.linalg.norm(tracks.positions - expect, axis=-1).mean() < 1.0


def test_velocity_follows_motion_beyond_the_window(lab, texture):
    # the scene speeds up by 8 px per frame to 44 px/frame, far beyond the 24 px
    # (6-cell) search window; the constant-velocity prediction is never more than 8 px off
    steps = np.array([0, 4, 12, 20, 28, 36, 44])
    dx = np.cumsum(steps).astype(float)
    h, w = 96, 256
    base = texture(h, w + 200, seed=11)
    frames = np.stack([shift(base, (0, d, 0), order=3, mode="reflect")[:, 200:]
                       for d in dx]).round().clip(0, 255).astype(np.uint8)
    pts = np.c_[np.zeros(6), np.linspace(20, 76, 6), np.linspace(20, 70, 6)]
    expect = pts[None, :, 1:] + np.c_[np.zeros_like(dx), dx][:, None]

    def error(motion: str) -> np.ndarray:
        tracks = track_points(lab, frames, pts, settings=TrackSettings(motion=motion))
        return np.linalg.norm(tracks.positions - expect, axis=-1).mean(1)

    assert error("velocity").max() < 1.5
    assert error("none")[-1] > 20          # without the prediction the points are lost


# --------------------------------------------------------------------------- keyframes


def test_a_later_keyframe_takes_over_going_forward(lab, texture):
    """A track given on frames 0 and 4 (the user moved the point on 4 by 10 px): frames
    1-3 are tracked from frame 0 exactly as without the second keyframe, frame 4 is the
    given point, frames 5-7 follow it from there."""
    frames, motion = _translated(texture)
    first = _points(n=3, seed=7)
    moved = first[1].copy()
    moved[0] = 4
    moved[1:] += motion[4] + (0.0, 10.0)                 # where the user put it on frame 4
    pts = np.concatenate([first, moved[None]])
    tracks = track_points(lab, frames, pts, track_ids=[5, 7, 9, 7])
    assert tracks.positions.shape == (T, 3, 2)           # one column per track: 5, 7, 9
    alone = track_points(lab, frames, first)
    np.testing.assert_array_equal(tracks.positions[:4], alone.positions[:4])
    np.testing.assert_array_equal(tracks.positions[:, [0, 2]], alone.positions[:, [0, 2]])
    np.testing.assert_allclose(tracks.positions[4, 1], moved[1:])
    expect = moved[None, 1:] + motion[5:] - motion[4]
    assert np.linalg.norm(tracks.positions[5:, 1] - expect, axis=-1).max() < 1.5
    assert np.linalg.norm(alone.positions[5:, 1] - expect, axis=-1).min() > 8   # changed


def test_frames_before_the_first_keyframe_come_backward_from_it(lab, texture):
    frames, motion = _translated(texture)
    a = np.array([[3, 40.0, 60.0]])
    b = a.copy()
    b[0, 0] = 6
    b[0, 1:] += motion[6] - motion[3] + (4.0, 0.0)
    tracks = track_points(lab, frames, np.concatenate([a, b]), track_ids=[1, 1])
    alone = track_points(lab, frames, a)
    np.testing.assert_array_equal(tracks.positions[:6], alone.positions[:6])
    np.testing.assert_allclose(tracks.positions[6, 0], b[0, 1:])


def test_start_computes_only_from_the_corrected_frame(lab, texture):
    """Re-tracking from frame k (start=k) gives what the full run gives from k on."""
    frames, motion = _translated(texture)
    k = 4
    pts = np.concatenate([_points(n=2, seed=8), _points(n=2, seed=8, t=k)])
    ids = [1, 2, 1, 2]
    full = track_points(lab, frames, pts, track_ids=ids)
    calls = []
    part = track_points(lab, frames, pts, track_ids=ids, start=k,
                        progress=lambda d, n: calls.append(n))
    assert np.isnan(part.positions[:k]).all() and not part.visible[:k].any()
    np.testing.assert_array_equal(part.positions[k:], full.positions[k:])
    assert calls[0] == T - 1 - k                         # frames k+1..T-1 only


def test_lost_points_are_nan_not_parked_in_a_corner(lab, texture):
    """A point off the masked object has no heat left once gated by the mask: lost."""
    frames, _ = _translated(texture)
    mask = np.zeros((H, W), bool)
    mask[70:90, 100:120] = True
    pts = np.array([[0, 70.0, 105.0], [0, 10.0, 10.0]])   # on the object, far from it
    tracks = track_points(lab, frames, pts, object_masks={0: mask})
    assert np.isfinite(tracks.positions[:, 0]).all()
    assert np.isnan(tracks.positions[1:, 1]).all() and not tracks.visible[1:, 1].any()
    np.testing.assert_allclose(tracks.positions[0, 1], pts[1, 1:])


def test_two_points_of_one_track_on_one_frame_raise(lab):
    frames = np.zeros((4, 32, 48, 3), np.uint8)
    pts = np.array([[1, 10.0, 10.0], [1, 12.0, 12.0]])
    with pytest.raises(InputError, match="two points on frame 1"):
        track_points(lab, frames, pts, track_ids=[3, 3])
    with pytest.raises(InputError, match="one id per point"):
        track_points(lab, frames, pts, track_ids=[3])


@pytest.mark.parametrize("points, match", [
    (np.zeros((0, 3)), "no points"),
    (np.array([[0, 10.0]]), "shape"),
    (np.array([[0, np.nan, 5.0]]), "NaN"),
    (np.array([[9, 10.0, 10.0]]), "does not exist"),
    (np.array([[-1, 10.0, 10.0]]), "does not exist"),
    (np.array([[1.5, 10.0, 10.0]]), "does not exist"),
    (np.array([[0, 10.0, 200.0]]), "outside"),
    (np.array([[0, -1.0, 10.0]]), "outside"),
])
def test_invalid_points_raise(lab, points, match):
    frames = np.zeros((4, 32, 48, 3), np.uint8)
    with pytest.raises(InputError, match=match):
        track_points(lab, frames, points)


def test_invalid_object_mask_raises(lab):
    frames = np.zeros((4, 32, 48, 3), np.uint8)
    pts = np.array([[0, 10.0, 10.0]])
    with pytest.raises(InputError, match="size"):
        track_points(lab, frames, pts, object_masks={0: np.ones((10, 10))})
    with pytest.raises(InputError, match="does not exist"):
        track_points(lab, frames, pts, object_masks={7: np.ones((32, 48))})


def test_invalid_settings_raise(lab):
    frames = np.zeros((4, 32, 48, 3), np.uint8)
    pts = np.array([[0, 10.0, 10.0]])
    with pytest.raises(InputError, match="motion"):
        track_points(lab, frames, pts, settings=TrackSettings(motion="sideways"))
    with pytest.raises(TypeError, match="TrackSettings"):
        track_points(lab, frames, pts, settings=PropagationSettings())


# --------------------------------------------------------------------------- settings


def test_tracking_defaults_hold_their_own_propagation_settings():
    # tracking keeps 3 matches per position (the masks keep 10) and the paper's 13x13
    # window (the masks' is 17x17); everything else of the engine is the masks' default
    # (docs/measurements-tracking.md)
    ts = TrackSettings()
    assert ts.propagation == PropagationSettings(topk=3, radius=6)
    assert (PropagationSettings().topk, PropagationSettings().radius) == (10, 8)
    assert (ts.motion, ts.context, ts.visible_threshold) == ("velocity", None, 0.1)


def test_user_facing_tracking_options():
    assert [o.name for o in options(TrackSettings)] == [
        "visible_threshold", "mask_power", "motion", "context"]
    motion = {o.name: o for o in options(TrackSettings)}["motion"]
    assert motion.choices == ("velocity", "position", "none")
    # an instance's options start from its values: tracking's own top-k
    assert {o.name: o.default for o in options(TrackSettings().propagation)}["topk"] == 3
    assert {o.name: o.default for o in options(PropagationSettings)}["topk"] == 10
