"""DAVIS evaluation smoke tests: a tiny DAVIS-layout folder built in tmp_path (two moving
squares), the identity baseline and Lab features, results.json, and the layout helpers;
one real sequence's first frames when ../shared/data is there."""
import json
import shutil
from pathlib import Path

import imageio.v2 as iio
import numpy as np
import pytest

from corrflow_napari.errors import InputError
from corrflow_napari.evaluation import (
    evaluate_davis,
    find_sequence_root,
    load_sequence_prefix,
    read_frame_annotation,
    resolve_sequences,
    split_roots,
    write_results,
)
from corrflow_napari.io import write_indexed_png

DAVIS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "davis2016-dev"
needs_davis = pytest.mark.skipif(not DAVIS.is_dir(),
                                 reason="../shared/data/davis2016-dev is absent (CI has it)")


def squares(t=6, h=64, w=80, step=3):
    """Frames (T,H,W,3) uint8 with two moving squares and their (T,H,W) ids 1 and 2."""
    frames = np.full((t, h, w, 3), 90, np.uint8)
    labels = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        x = 8 + step * i
        frames[i, 10:26, x:x + 16] = (230, 40, 40)
        labels[i, 10:26, x:x + 16] = 1
        frames[i, 36:54, x + 10:x + 28] = (40, 60, 230)
        labels[i, 36:54, x + 10:x + 28] = 2
    return frames, labels


def write_sequence(root: Path, seq: str, frames, labels) -> None:
    """One sequence in DAVIS layout: JPEG frames and indexed PNG annotations."""
    img = root / "JPEGImages" / "480p" / seq
    ann = root / "Annotations" / "480p" / seq
    img.mkdir(parents=True)
    ann.mkdir(parents=True)
    for t, (f, lab) in enumerate(zip(frames, labels)):
        iio.imwrite(img / f"{t:05d}.jpg", f, quality=95)
        write_indexed_png(ann / f"{t:05d}.png", lab)


@pytest.fixture
def toy_davis(tmp_path):
    root = tmp_path / "davis"
    write_sequence(root, "squares", *squares())
    write_sequence(root, "slow", *squares(step=1))
    return root


def check_scores(res: dict, n_frames: int) -> None:
    for key in ("J", "F", "JF", "J_recall", "F_recall"):
        assert 0.0 <= res[key] <= 1.0, (key, res[key])
    assert res["JF"] == pytest.approx((res["J"] + res["F"]) / 2)
    assert res["n_frames"] == n_frames and res["n_frames_scored"] == n_frames - 2
    assert res["s_per_frame"] >= 0


@pytest.mark.parametrize("features", ["identity", "lab"])
def test_evaluate_toy_folder_writes_results(toy_davis, tmp_path, features):
    out = tmp_path / "out"
    lines = []
    results = evaluate_davis(toy_davis, ["squares"], features=features, device="cpu",
                             out_dir=out, log=lines.append)
    res = results["squares"]
    check_scores(res, 6)
    assert set(res["objects"]) == {1, 2}
    if features == "identity":               # the squares move 3 px/frame: frame 0 lags
        assert res["J"] < 0.9
    else:                                    # Lab colour follows plain coloured squares
        assert res["J"] > 0.9 and res["F"] > 0.9
    assert len(lines) == 1 and lines[0].startswith("squares: J ")
    saved = json.loads((out / "results.json").read_text())
    assert saved["features"] == features and saved["weights"] is None
    assert saved["sequences"]["squares"]["J"] == pytest.approx(res["J"])
    assert "scale" in saved["settings"]
    assert sorted(p.name for p in (out / "squares").iterdir()) == [f"{t:05d}.png"
                                                                    for t in range(6)]
    assert not list(out.glob(".*"))                   # no temp file left


def test_sequences_keep_the_requested_order(toy_davis):
    results = evaluate_davis(toy_davis, ["squares", "slow"], features="identity",
                             log=lambda s: None)
    assert list(results) == ["squares", "slow"]
    assert results["slow"]["J"] > results["squares"]["J"]     # slower motion, less lag


def test_cli_eval_davis(toy_davis, tmp_path, capsys):
    from corrflow_napari.cli import main
    out = tmp_path / "out"
    assert main(["eval-davis", str(toy_davis), "--sequences", "squares", "--baseline",
                 "identity", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "features: identity" in table and "squares" in table
    assert list(json.loads((out / "results.json").read_text())["sequences"]) == ["squares"]
    assert main(["eval-davis", str(toy_davis), "--sequences", "nosuch"]) == 2


def test_pool_worker_runs_one_sequence(toy_davis):
    # what each process of ``jobs`` > 1 runs (the pool itself costs seconds to spawn)
    from corrflow_napari.evaluation.davis_eval import _worker
    from corrflow_napari.propagation import PropagationSettings
    seq, res = _worker(dict(seq="slow", root=str(toy_davis), features="identity", weights=None,
                            device="cpu", settings=PropagationSettings(), out_dir=None))
    assert seq == "slow"
    check_scores(res, 6)


def test_layout_helpers(toy_davis, tmp_path):
    assert resolve_sequences(toy_davis, "all") == ["slow", "squares"]
    assert resolve_sequences(toy_davis, " squares ,slow") == ["squares", "slow"]
    with pytest.raises(InputError, match="nosuch"):
        resolve_sequences(toy_davis, "squares,nosuch")
    with pytest.raises(InputError, match="not a DAVIS folder"):
        resolve_sequences(tmp_path, "all")
    other = tmp_path / "other"
    write_sequence(other, "extra", *squares(t=3))
    roots = split_roots(f"{toy_davis},{other}")
    assert roots == [toy_davis, other]
    assert find_sequence_root(roots, "extra") == other
    with pytest.raises(InputError, match="no frames"):
        find_sequence_root(roots, "nosuch")
    with pytest.raises(InputError, match="no DAVIS folder"):
        split_roots(" , ")
    frames, gt = load_sequence_prefix(toy_davis, "squares", max_frames=4)
    assert frames.shape == (4, 64, 80, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(gt, squares()[1][:4])
    np.testing.assert_array_equal(read_frame_annotation(toy_davis, "squares", 5),
                                  squares()[1][5])
    with pytest.raises(InputError, match="missing"):
        read_frame_annotation(toy_davis, "squares", 6)


def test_results_json_takes_numpy(tmp_path):
    path = write_results(tmp_path / "new", {"a": np.float32(0.5), "n": np.int64(3),
                                            "xs": np.arange(3), "p": tmp_path})
    assert json.loads(path.read_text()) == {"a": 0.5, "n": 3, "xs": [0, 1, 2],
                                            "p": str(tmp_path)}


@needs_davis
def test_real_sequence_start_with_lab(tmp_path):
    # the first 3 frames of blackswan, copied into a DAVIS folder of their own
    seq, root = "blackswan", tmp_path / "davis"
    for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        dst = root / kind / "480p" / seq
        dst.mkdir(parents=True)
        for t in range(3):
            shutil.copy(DAVIS / kind / "480p" / seq / f"{t:05d}.{ext}", dst)
    res = evaluate_davis(root, [seq], features="lab", device="cpu", out_dir=tmp_path / "out",
                         log=lambda s: None)[seq]
    check_scores(res, 3)
    assert res["J"] > 0.8, res
    assert (tmp_path / "out" / "results.json").is_file()
