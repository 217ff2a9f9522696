"""The GPU training run (scripts/train_gpu.py) and its bundle builder, on the CPU with tiny
settings: the same script and code path a GPU machine runs."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .load import load_script as _load


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, texture):
    """A bundle of two frame folders of a texture drifting 2 px per frame."""
    root = tmp_path_factory.mktemp("src")
    for v in range(2):
        tex = texture(120, 200, seed=v)
        d = root / f"video{v}"
        d.mkdir()
        for t in range(8):
            Image.fromarray(tex[:96, 2 * t:2 * t + 160].astype(np.uint8)).save(d / f"{t:05d}.png")
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    build = _load("build_training_bundle")
    manifest = build.build(out, sorted(root.iterdir()), short=64, fps_target=0, quality=90,
                           max_frames=100)
    return out, manifest


def test_bundle_layout(bundle):
    out, manifest = bundle
    assert [v["frames"] for v in manifest["videos"]] == [8, 8]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    frame = np.asarray(Image.open(out / "video0" / "00000.jpg"))
    assert min(frame.shape[:2]) == 64                     # short side resized


def test_bundle_refuses_dev_sequences(tmp_path):
    build = _load("build_training_bundle")
    with pytest.raises(SystemExit):
        build.build(tmp_path / "b", [Path("/x/davis2016-dev/JPEGImages/480p/cows")], 64, 0, 90,
                    10)


def test_tiny_run_trains_resumes_and_logs(bundle, tmp_path):
    out, _ = bundle
    train = _load("train_gpu")
    args = ["--tiny", "--device", "cpu", "--log-every", "1", "--iters", "50", "--batch", "2"]
    first = train.run(train.build_parser().parse_args([str(out), str(tmp_path / "run"),
                                                       "--steps", "3", *args]))
    assert first["step"] == 3 and first["start_step"] == 0
    assert first["steps_per_s"] > 0 and first["images_per_s"] == pytest.approx(
        first["steps_per_s"] * 2 * 3)
    second = train.run(train.build_parser().parse_args([str(out), str(tmp_path / "run"),
                                                        "--steps", "2", *args]))
    assert second["start_step"] == 3 and second["step"] == 5
    rows = list(csv.DictReader(open(tmp_path / "run" / "loss.csv")))
    assert int(rows[-1]["step"]) == second["step"]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    from corrflow_napari.model import load_model
    model = load_model(tmp_path / "run" / "last.pt", device="cpu")   # a usable checkpoint
    assert model.config.width == 0.25


def test_init_from_a_checkpoint_and_export_fp16(bundle, tmp_path):
    out, _ = bundle
    train = _load("train_gpu")
    args = ["--tiny", "--device", "cpu", "--iters", "50", "--batch", "2", "--steps", "1"]
    train.run(train.build_parser().parse_args([str(out), str(tmp_path / "a"), *args]))
    export = tmp_path / "continued.pt"
    res = train.run(train.build_parser().parse_args(
        [str(out), str(tmp_path / "b"), *args, "--init", str(tmp_path / "a" / "last.pt"),
         "--export", str(export)]))
    assert res["start_step"] == 0 and res["step"] == 1
    from corrflow_napari.model import read_checkpoint
    ck = read_checkpoint(export)
    assert "optimizer" not in ck
    assert any(str(v.dtype) == "torch.float16" for v in ck["encoder"].values())


def test_iters_zero_fits_the_schedule_to_the_minutes(bundle, tmp_path, monkeypatch):
    out, _ = bundle
    train = _load("train_gpu")
    monkeypatch.setattr(train, "FIT_AFTER", (1, 3))
    res = train.run(train.build_parser().parse_args(
        [str(out), str(tmp_path / "fit"), "--tiny", "--device", "cpu", "--batch", "2",
         "--iters", "0", "--minutes", "5", "--steps", "6", "--log-every", "1"]))
    assert res["step"] == 6
    assert 6 < res["iters"] < 10**6           # fitted to 5 minutes from the measured speed


def test_iters_zero_refits_the_schedule_when_steps_slow_down(bundle, tmp_path, monkeypatch):
    """A CPU run that other jobs slow down still ends its schedule at the deadline: the
    schedule is fitted again from the recent speed (here: every step, steps made slow)."""
    import time
    out, _ = bundle
    train = _load("train_gpu")
    monkeypatch.setattr(train, "FIT_AFTER", (1, 3))
    monkeypatch.setattr(train, "REFIT_S", 0.0)
    fitted = []
    real_fit, real_step = train._fit_schedule, train.train_step

    def fit(config, step, *a, **k):
        config, last = real_fit(config, step, *a, **k)
        fitted.append((step, config.iters))
        return config, last

    def slow_step(*a, **k):
        if len(fitted) >= 1:
            time.sleep(0.5)          # a neighbour takes the CPU after the first fit
        return real_step(*a, **k)

    monkeypatch.setattr(train, "_fit_schedule", fit)
    monkeypatch.setattr(train, "train_step", slow_step)
    train.run(train.build_parser().parse_args(
        [str(out), str(tmp_path / "refit"), "--tiny", "--device", "cpu", "--batch", "2",
         "--iters", "0", "--minutes", "5", "--steps", "6", "--log-every", "1"]))
    assert [s for s, _ in fitted][:2] == [3, 4]           # fitted, then refitted each step
    assert fitted[-1][1] < fitted[0][1] / 2               # slower steps: a shorter schedule
    assert fitted[-1][1] < 5 * 60 / 0.5                   # at most what fits at 0.5 s/step


def test_gpu_check_times_propagation(tmp_path, texture, capsys):
    """scripts/gpu_check.py (the GPU frames/s row) runs here on the CPU: one JSON line per
    model and chunk size, every frame propagated."""
    tex = texture(120, 200, seed=3)
    img = tmp_path / "JPEGImages" / "480p" / "drift"
    ann = tmp_path / "Annotations" / "480p" / "drift"
    img.mkdir(parents=True)
    ann.mkdir(parents=True)
    for t in range(5):
        Image.fromarray(tex[:64, 2 * t:2 * t + 96].astype(np.uint8)).save(img / f"{t:05d}.jpg")
        mask = np.zeros((64, 96), np.uint8)
        mask[20:40, 30 + 2 * t:60 + 2 * t] = 1
        Image.fromarray(mask).save(ann / f"{t:05d}.png")
    _load("gpu_check").main([str(tmp_path), "--seq", "drift", "--device", "cpu",
                             "--model", "lab", "--chunk-tiles", "4,64", "--profile", "3"])
    out = capsys.readouterr().out
    rows = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert [r["chunk_tiles"] for r in rows] == [4, 64]
    assert "Self CPU" in out and "aten::" in out          # the profiler's operator table
    assert all(r["frames"] == 5 and r["frames_per_s"] > 0 for r in rows)
