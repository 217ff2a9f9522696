"""BADJA: PCK scoring on hand-made tracks, reading annotation files, and (on the real
data under ../shared/data) the static floor and ``corrflow eval-badja``."""
import json
from pathlib import Path

import numpy as np
import pytest

from corrflow_napari.errors import InputError
from corrflow_napari.evaluation import (
    BadjaSequence,
    evaluate_badja_sequence,
    load_badja,
    score_badja,
    to_frame_pixels,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
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
