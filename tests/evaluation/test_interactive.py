"""Robot-user evaluation (eval-interactive) on a tiny synthetic DAVIS folder: a square
that changes colour half-way, so first-frame propagation loses it and corrections pay."""
import json

import numpy as np
import pytest

from corrflow_napari.errors import InputError
from corrflow_napari.evaluation import Robot, robots_from, run_robots
from corrflow_napari.evaluation.interactive import per_frame_j, pick_frame, spearman
from tests.evaluation.test_davis_eval import write_sequence


def changing_square(t=12, h=64, w=80, switch=6):
    """A square moving right that turns from red to green at frame ``switch``."""
    frames = np.full((t, h, w, 3), 90, np.uint8)
    labels = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        x = 6 + 3 * i
        frames[i, 20:40, x:x + 20] = (230, 40, 40) if i < switch else (40, 220, 60)
        labels[i, 20:40, x:x + 20] = 1
    return frames, labels


@pytest.fixture(scope="module")
def lab():
    from corrflow_napari.model import load_model
    return load_model("lab", device="cpu")


def test_rounds_never_lower_j_and_f(lab):
    frames, gt = changing_square()
    out = run_robots(lab, frames, gt, robots_from("gt,confidence", "confidence,one-sided"), 3)
    assert list(out) == ["gt/confidence", "confidence/confidence", "gt/one-sided",
                         "confidence/one-sided"]
    for name, rows in out.items():
        jf = [r["JF"] for r in rows]
        assert [r["round"] for r in rows] == [0, 1, 2, 3], name
        if name.startswith("gt/"):        # a correction where J is lowest never hurts
            assert all(b >= a for a, b in zip(jf, jf[1:])), (name, jf)
        assert rows[0]["JF"] < 0.8 and rows[-1]["JF"] > rows[0]["JF"] + 0.3, (name, jf)
        keys = [r["keyframe"] for r in rows]
        assert keys[0] == 0 and len(set(keys)) == 4 and all(0 < k < 11 for k in keys[1:])
        assert rows[1]["keyframe"] == 6              # the first frame it lost
    assert out["gt/confidence"][0]["JF"] == out["gt/one-sided"][0]["JF"]   # shared round 0
    # mass (the object's share of its keyframe's) finds the frames where it was lost
    assert out["gt/confidence"][0]["spearman"]["mass"] > 0.9


def test_cli_writes_rounds(tmp_path, capsys):
    from corrflow_napari.cli import main
    root = tmp_path / "davis"
    write_sequence(root, "switch", *changing_square())
    out = tmp_path / "out"
    assert main(["eval-interactive", str(root), "--sequences", "switch", "--rounds", "2",
                 "--features", "lab", "--device", "cpu", "--pick", "gt,confidence",
                 "--fusion", "confidence", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "gt/confidence" in table and "confidence/confidence" in table and "round 2" in table
    res = json.loads((out / "results.json").read_text())
    assert res["robots"] == ["gt/confidence", "confidence/confidence"] and res["rounds"] == 2
    rows = res["sequences"]["switch"]["robots"]["gt/confidence"]
    jf = [r["JF"] for r in rows]
    assert len(jf) == 3 and jf[0] <= jf[1] <= jf[2]
    assert all(r["seconds"] >= 0 and set(r["spearman"]) >= {"soft_iou", "mass"} for r in rows)
    assert res["mean"]["gt/confidence"]["JF"] == pytest.approx(jf)
    assert main(["eval-interactive", str(root), "--pick", "worst"]) == 2


def test_pick_and_helpers():
    j = np.array([1.0, 0.2, 0.5, 0.1, 0.0])
    conf = np.array([1.0, 0.9, 0.3, 0.8, 0.1])
    assert pick_frame("gt", {0: None}, j, conf) == 3          # not the (unscored) last
    assert pick_frame("gt", {0: None, 3: None}, j, conf) == 1
    assert pick_frame("confidence", {0: None}, j, conf) == 2
    assert pick_frame("gt", {0: None, 1: None, 2: None, 3: None}, j, conf) is None
    gt = np.zeros((2, 4, 4), np.uint8)
    gt[:, :2] = 1
    pred = gt.copy()
    pred[1, :1] = 0
    np.testing.assert_allclose(per_frame_j(gt, pred, [1]), [1.0, 0.5])
    assert spearman(np.arange(5.0), np.arange(5.0) ** 2) == pytest.approx(1.0)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))
    with pytest.raises(InputError, match="pick"):
        Robot(pick="worst")
    with pytest.raises(InputError, match="fusion"):
        robots_from("gt", "nearest")
