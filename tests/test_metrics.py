"""Tests for corrflow_napari.metrics on hand-made masks with hand-computed answers."""
import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from corrflow_napari.metrics import (
    boundary_f,
    boundary_map,
    boundary_tolerance,
    evaluate_sequence,
    format_table,
    pck,
    region_j,
    summarise,
)

H, W = 480, 854          # DAVIS 480p frame; tolerance = ceil(0.008 * 979.65) = 8 px


def square(y, x, size, shape=(H, W)):
    m = np.zeros(shape, bool)
    m[y:y + size, x:x + size] = True
    return m


def dot(y, x, shape=(H, W)):
    m = np.zeros(shape, bool)
    m[y, x] = True
    return m


# ------------------------------------------------------------------ tolerance / boundary map
def test_tolerance_480p_is_8px():
    assert math.hypot(H, W) == pytest.approx(979.65, abs=0.01)
    assert boundary_tolerance((H, W)) == 8
    assert boundary_tolerance((100, 100)) == 2          # ceil(0.008 * 141.4) = ceil(1.13)
    assert boundary_tolerance((H, W), bound_th=3) == 3  # >= 1: pixels directly


def test_boundary_map_square_and_edges():
    b = boundary_map(square(10, 10, 10, shape=(40, 40)))
    assert b.dtype == bool and b.shape == (40, 40)
    assert b.sum() == 36                                # 10x10 ring, 1 px wide
    assert not b[11:19, 11:19].any()                    # interior
    assert b[10, 10:20].all() and b[19, 10:20].all() and b[10:20, 10].all() and b[10:20, 19].all()
    # a mask filling the frame: its boundary is the frame edge
    assert boundary_map(np.ones((5, 6), bool)).sum() == 2 * 5 + 2 * 6 - 4
    # a 1-px thin line is all boundary; empty mask has no boundary
    line = np.zeros((5, 5), bool)
    line[2, 1:4] = True
    assert (boundary_map(line) == line).all()
    assert not boundary_map(np.zeros((5, 5), bool)).any()


# ------------------------------------------------------------------ J and F
def test_identical_masks():
    m = square(100, 200, 40)
    assert region_j(m, m) == 1.0
    assert boundary_f(m, m) == 1.0


def test_disjoint_masks():
    a, b = square(10, 10, 10), square(300, 500, 10)
    assert region_j(a, b) == 0.0
    assert boundary_f(a, b) == 0.0                      # ~490 px apart >> 8 px


def test_square_shifted_by_5px_j():
    a = square(20, 20, 10)
    b = square(20, 25, 10)
    assert region_j(a, b) == pytest.approx(50 / 150)


def test_offset_within_tolerance_f_is_1_j_below_1():
    a = square(100, 100, 40)
    b = square(100, 105, 40)                            # 5 px < 8 px tolerance
    assert region_j(a, b) == pytest.approx(35 * 40 / (45 * 40))
    assert boundary_f(a, b) == 1.0
    c = square(105, 105, 40)                            # diagonal 5 px: corners 7.1 px apart
    assert boundary_f(a, c) == 1.0


def test_offset_far_beyond_tolerance_f_is_0():
    a = square(100, 100, 40)
    b = square(100, 160, 40)                            # 20 px gap between the squares
    assert region_j(a, b) == 0.0
    assert boundary_f(a, b) == 0.0


def test_tolerance_is_a_disk_of_radius_8():
    g = dot(100, 100)                                   # a single pixel is its own boundary
    assert boundary_f(g, dot(100, 108)) == 1.0          # distance 8
    assert boundary_f(g, dot(100, 109)) == 0.0          # distance 9
    assert boundary_f(g, dot(105, 106)) == 1.0          # sqrt(61) = 7.8
    assert boundary_f(g, dot(106, 106)) == 0.0          # sqrt(72) = 8.5


def test_partial_boundary_match_by_hand():
    # gt: 10x10 at rows/cols 10..19 (36 boundary px); pred: 10x30 at rows 10..19, cols
    # 10..39 (2*30 + 2*8 = 76 boundary px); radius 2 px.
    # recall: all gt boundary px matched except the right column's rows 13..16 -> 32/36.
    # precision: pred top/bottom rows at cols 10..21 (2*12) + left column (8) -> 32/76.
    # F = 2PR/(P+R) = 2*32 / (36 + 76).
    g = square(10, 10, 10, shape=(60, 60))
    p = np.zeros((60, 60), bool)
    p[10:20, 10:40] = True
    assert boundary_f(g, p, bound_th=2) == pytest.approx(64 / 112)
    assert boundary_f(p, g, bound_th=2) == pytest.approx(64 / 112)   # symmetric


def test_empty_cases():
    e = np.zeros((H, W), bool)
    m = square(50, 50, 20)
    assert region_j(e, e) == 1.0 and boundary_f(e, e) == 1.0
    assert region_j(m, e) == 0.0 and boundary_f(m, e) == 0.0   # empty pred: P=1, R=0
    assert region_j(e, m) == 0.0 and boundary_f(e, m) == 0.0   # empty gt:  P=0, R=1


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        region_j(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    with pytest.raises(ValueError):
        boundary_f(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def _reference_f(gt, pred, radius):
    """Slow full-frame F with an explicit disk dilation (no cropping, no distance transform)."""
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = yy ** 2 + xx ** 2 <= radius ** 2
    gb, pb = boundary_map(gt), boundary_map(pred)
    if gb.sum() == 0 or pb.sum() == 0:
        return None
    prec = (pb & ndi.binary_dilation(gb, disk)).sum() / pb.sum()
    rec = (gb & ndi.binary_dilation(pb, disk)).sum() / gb.sum()
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


def test_fast_f_matches_full_frame_reference_on_random_blobs():
    rng = np.random.default_rng(0)
    for _ in range(6):
        noise = rng.random((2, 60, 90))
        gt = ndi.gaussian_filter(noise[0], 4) > 0.5
        pred = ndi.gaussian_filter(noise[1] * 0.3 + noise[0] * 0.7, 4) > 0.5
        ref = _reference_f(gt, pred, 3)
        if ref is not None:
            assert boundary_f(gt, pred, bound_th=3) == pytest.approx(ref)


# ------------------------------------------------------------------ sequences
def _seq(t=5, shape=(60, 80)):
    gt = np.zeros((t,) + shape, np.uint8)
    gt[:, 10:20, 10:20] = 3
    gt[:, 30:40, 40:50] = 7
    return gt


def test_first_and_last_frames_are_not_scored():
    gt = _seq()
    pred = gt.copy()
    pred[0] = 0                                         # first frame: everything wrong
    pred[-1] = 0
    pred[-1, 0:5, 0:5] = 7                              # last frame: wrong object elsewhere
    res = evaluate_sequence(gt, pred)
    assert res["n_frames_scored"] == 3
    assert res["J"] == 1.0 and res["F"] == 1.0 and res["JF"] == 1.0
    assert res["J_recall"] == 1.0 and res["F_recall"] == 1.0
    assert set(res["objects"]) == {3, 7}


def test_sequence_averages_over_objects_with_arbitrary_ids():
    gt = _seq()
    pred = gt.copy()
    pred[2][pred[2] == 7] = 0
    pred[2, 30:40, 45:55] = 7                           # object 7, frame 2: J = 50/150
    pred[3][pred[3] == 7] = 0                           # object 7, frame 3: missing
    pred[1, 55:58, 70:73] = 9                           # ids not in gt[0] are ignored
    res = evaluate_sequence(gt, pred)
    o3, o7 = res["objects"][3], res["objects"][7]
    assert o3 == {"J": 1.0, "F": 1.0, "J_recall": 1.0, "F_recall": 1.0}
    assert o7["J"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert o7["J_recall"] == pytest.approx(1 / 3)
    # frame 2, object 7: tolerance on 60x80 is ceil(0.008 * 100) = 1 px.  Each 36-px ring
    # has 14 px within 1 px of the other ring: 6 on the top row (the 5 shared columns + 1),
    # 6 on the bottom row, and the two end pixels of the inner vertical side -> F = 14/36.
    f2 = boundary_f(gt[2] == 7, pred[2] == 7)
    assert f2 == pytest.approx(14 / 36)
    assert o7["F"] == pytest.approx((1 + 14 / 36 + 0) / 3)   # frame 3: empty pred -> F = 0
    assert o7["F_recall"] == pytest.approx(1 / 3)
    assert res["J"] == pytest.approx((1 + o7["J"]) / 2)
    assert res["F"] == pytest.approx((1 + o7["F"]) / 2)
    assert res["JF"] == pytest.approx((res["J"] + res["F"]) / 2)


def test_object_absent_in_both_counts_as_perfect():
    gt = _seq()
    gt[2][gt[2] == 3] = 0                               # object 3 occluded in frame 2 ...
    pred = gt.copy()                                    # ... and predicted absent
    res = evaluate_sequence(gt, pred)
    assert res["J"] == 1.0 and res["F"] == 1.0


def test_sequence_errors():
    gt = _seq(t=2)
    with pytest.raises(ValueError, match="frame"):
        evaluate_sequence(gt, gt)
    with pytest.raises(ValueError):
        evaluate_sequence(_seq(), _seq()[:, :, :-1])
    with pytest.raises(ValueError, match="no objects"):
        evaluate_sequence(np.zeros((4, 8, 8), int), np.zeros((4, 8, 8), int))


# ------------------------------------------------------------------ PCK
def test_pck_hand_made():
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, 0] = (3, 4)          # error 5
    pred[0, 1] = (0, 10)         # error 10
    pred[0, 2] = (0, 1)          # error 1
    pred[1, 0] = (6, 8)          # error 10
    pred[1, 1] = (100, 0)        # error 100, but invisible
    pred[1, 2] = (0, 0)          # error 0
    visible = np.array([[True, True, True], [True, False, True]])
    thresholds = np.array([[50.0], [100.0]])           # per frame, broadcast over joints
    # alpha 0.1 -> 5 px in frame 0 (errors 5, 10, 1: 2 ok), 10 px in frame 1 (10, 0: 2 ok)
    assert pck(pred, gt, visible, thresholds, 0.1) == pytest.approx(4 / 5)
    # alpha 0.05 -> 2.5 px / 5 px: frame 0 one ok (1), frame 1 one ok (0)
    assert pck(pred, gt, visible, thresholds, 0.05) == pytest.approx(2 / 5)
    # the invisible joint would fail at any alpha here, and does not count
    assert pck(pred, gt, visible, thresholds, 1.0) == 1.0
    # scalar threshold
    assert pck(pred, gt, visible, 10.0, 1.0) == 1.0
    assert pck(pred, gt, visible, 10.0, 0.5) == pytest.approx(3 / 5)


def test_pck_none_visible_and_bad_shapes():
    gt = np.zeros((4, 2))
    assert math.isnan(pck(gt, gt, np.zeros(4, bool), 1.0, 0.1))
    with pytest.raises(ValueError):
        pck(np.zeros((4, 2)), np.zeros((3, 2)), np.ones(4, bool), 1.0, 0.1)
    with pytest.raises(ValueError):
        pck(gt, gt, np.ones(3, bool), 1.0, 0.1)


# ------------------------------------------------------------------ summary / table
def test_summarise_and_format_table():
    results = {
        # values chosen so that no percentage sits on a rounding tie
        "blackswan": {"J": 0.931, "F": 0.955, "JF": (0.931 + 0.955) / 2},
        "car-shadow": {"J": 0.523, "F": 0.703},          # JF missing: taken as (J + F) / 2
    }
    s = summarise(results)
    assert s["J"] == pytest.approx((0.931 + 0.523) / 2)
    assert s["F"] == pytest.approx((0.955 + 0.703) / 2)
    assert s["JF"] == pytest.approx((s["J"] + s["F"]) / 2)
    table = format_table(results)
    lines = table.splitlines()
    assert lines[0].split() == ["sequence", "J", "F", "J&F"]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines if ln and not ln.startswith("-")}
    assert rows["blackswan"] == ["93.1", "95.5", "94.3"]
    assert rows["car-shadow"] == ["52.3", "70.3", "61.3"]
    assert rows["mean"] == ["72.7", "82.9", "77.8"]
    assert lines[-1].startswith("mean")
    with pytest.raises(ValueError):
        summarise({})
