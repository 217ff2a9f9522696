"""Keypoints: BADJA PCK scoring on hand-made tracks, synthetic motion tracked to < 1 px,
points on several / non-zero frames, bad input, and ``corrflow eval-badja`` on real data."""
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import rotate, shift

from corrflow_napari.errors import InputError
from corrflow_napari.evaluation.badja import (
    BadjaSequence,
    evaluate_badja_sequence,
    load_badja,
    score_badja,
    to_frame_pixels,
)
from corrflow_napari.propagation import TrackSettings, track_points

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DAVIS_ROOTS = [DATA / "davis2016-dev", DATA / "davis2016-train"]
BADJA = DATA / "badja-dev"
needs_data = pytest.mark.skipif(
    not (BADJA / "cows.json").is_file() or not (DATA / "davis2016-dev").is_dir(),
    reason=f"real BADJA/DAVIS data not found under {DATA} (../shared/data next to the repo)")


# --------------------------------------------------------------------------- PCK

HW = (480, 854)          # frame size the predictions are given in


def _native(yx):
    """(y, x) on 480x854 frames -> BADJA 1920x1080 pixels."""
    return np.asarray(yx, float) * np.array([1080 / 480, 1920 / 854])


def _seq(joints_480, visible):
    joints = _native(joints_480)
    return BadjaSequence("toy", np.arange(len(joints)) * 5, joints, np.asarray(visible, bool))


def test_pck_known_answer():
    # 3 annotated frames, 4 joints; object area 100^2 px at 480p -> threshold 100 px
    # (at 480p), so PCK@0.1 needs error <= 10 px and PCK@0.2 <= 20 px.
    gt = np.zeros((3, 4, 2))
    gt[:, :, 0] = 200.0
    gt[:, :, 1] = [100.0, 200.0, 300.0, 400.0]
    vis = np.array([[1, 1, 1, 0],        # joint 3 not visible on the first frame: never scored
                    [1, 1, 1, 1],
                    [1, 0, 1, 1]])       # joint 1 not visible on frame 2: not scored there
    seq = _seq(gt, vis)
    pred = gt.copy()
    pred[1, 0] += [5, 0]                # frame 1: 5 px (both), 15 px (@0.2 only),
    pred[1, 1] += [0, 15]               # 25 px (neither)
    pred[1, 2] += [15, 20]
    pred[2, 0] += [0, -10]              # frame 2: exactly 10 px (both: <=), joint 1 is
    pred[2, 1] += [500, 500]            # ignored, 30 px (neither)
    pred[2, 2] += [-18, 24]
    pred[0] += 1000                     # the given frame is never scored
    res = score_badja(pred, seq, np.array([1e4, 1e4, 1e4]), HW)
    assert res["n_joints"] == 5 and res["n_frames"] == 2
    assert res["pck@0.1"] == pytest.approx(2 / 5)
    assert res["pck@0.2"] == pytest.approx(3 / 5)
    assert [r["n"] for r in res["per_frame"]] == [3, 2]
    assert res["per_frame"][0]["pck@0.2"] == pytest.approx(2 / 3)
    assert res["per_frame"][1]["pck@0.1"] == pytest.approx(1 / 2)


def test_pck_threshold_follows_mask_area_per_frame():
    gt = np.array([[[100.0, 100.0]], [[100.0, 100.0]], [[100.0, 100.0]]])
    seq = _seq(gt, np.ones((3, 1)))
    pred = gt + [[[0, 0]], [[12, 0]], [[12, 0]]]
    # frame 1: area 40^2 -> threshold 40 px (0.1: 4 px, 0.2: 8 px): 12 px is wrong;
    # frame 2: area 80^2 -> 0.1: 8 px, 0.2: 16 px: right at 0.2 only.
    res = score_badja(pred, seq, np.array([1.0, 40.0 ** 2, 80.0 ** 2]), HW)
    assert res["pck@0.1"] == 0.0 and res["pck@0.2"] == pytest.approx(0.5)
    # no object in a frame: nothing can be right there; NaN predictions are wrong
    res = score_badja(np.where(np.arange(3)[:, None, None] == 2, np.nan, gt), seq,
                      np.array([1.0, 0.0, 100.0]), HW)
    assert res["pck@0.2"] == 0.0


def test_pck_nothing_scored_is_nan_and_shapes_checked():
    gt = np.zeros((2, 2, 2))
    seq = _seq(gt, [[0, 1], [1, 0]])       # the only first-frame joint is hidden later
    res = score_badja(gt, seq, np.ones(2), HW)
    assert res["n_joints"] == 0 and np.isnan(res["pck@0.1"])
    with pytest.raises(ValueError):
        score_badja(gt[:1], seq, np.ones(2), HW)


def test_load_badja_sorts_frames_and_scales(tmp_path):
    entries = [{"image_path": f"DAVIS/JPEGImages/Full-Resolution/x/{f:05d}.jpg",
                "joints": [[1080, 1920], [540, 960]], "visibility": [True, False]}
               for f in (7, 2)]
    p = tmp_path / "x.json"
    p.write_text(json.dumps(entries))
    seq = load_badja(p)
    assert seq.name == "x" and list(seq.frames) == [2, 7]
    np.testing.assert_allclose(to_frame_pixels(seq.joints[0], (480, 854)),
                               [[480, 854], [240, 427]])
    p.write_text("{not json")
    with pytest.raises(InputError):
        load_badja(p)


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
    precise = track_points(lab, frames, pts, track_settings=TrackSettings(topk=10))
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
        tracks = track_points(lab, frames, pts, track_settings=TrackSettings(motion=motion))
        return np.linalg.norm(tracks.positions - expect, axis=-1).mean(1)

    assert error("velocity").max() < 1.5
    assert error("none")[-1] > 20          # without the prediction the points are lost


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


# --------------------------------------------------------------------------- real data


@needs_data
def test_static_floor_matches_reference():
    for seq, want in {"cows": (28.6, 52.9), "horsejump-high": (0.7, 8.2)}.items():
        res = evaluate_badja_sequence(None, DAVIS_ROOTS, BADJA / f"{seq}.json", static=True)
        got = (round(100 * res["pck@0.1"], 1), round(100 * res["pck@0.2"], 1))
        assert got == want, seq


@needs_data
def test_cli_eval_badja_on_a_real_subset(tmp_path, capsys):
    from corrflow_napari.cli import main
    roots = ",".join(str(r) for r in DAVIS_ROOTS)
    rc = main(["eval-badja", roots, str(BADJA), "--sequences", "horsejump-high",
               "--features", "lab", "--device", "cpu", "--max-frames", "3",
               "--out", str(tmp_path)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "horsejump-high" in table and "static" in table and "lab" in table
    res = json.loads((tmp_path / "results.json").read_text())
    r = res["methods"]["lab"]["sequences"]["horsejump-high"]
    assert r["n_frames"] == 1 and r["n_joints"] > 0 and 0 <= r["pck@0.2"] <= 1
    rows = (tmp_path / "horsejump-high_tracks.csv").read_text().splitlines()
    assert rows[0] == "joint,t,y,x,visible" and len(rows) == 1 + 3 * r["n_tracked"]
    # a sequence that has no annotation is a one-line input error (exit code 2)
    assert main(["eval-badja", roots, str(BADJA), "--sequences", "nosuch", "--static"]) == 2
