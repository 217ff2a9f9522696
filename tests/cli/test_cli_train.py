"""``corrflow train`` / ``corrflow finetune``: flags -> TrainConfig, and both commands end
to end on a frame folder (tiny sizes)."""
from __future__ import annotations

import argparse
import threading

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from corrflow_napari.cli import main
from corrflow_napari.cli_train import (
    add_finetune_arguments,
    add_train_arguments,
    cmd_train,
    config_from_args,
)
from corrflow_napari.model import read_checkpoint
from corrflow_napari.training import TrainConfig


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)     # tiny tensors: one thread is faster on a shared 2-core box
    yield
    torch.set_num_threads(n)


@pytest.fixture
def frame_folder(tmp_path, texture):
    """data/seq/00000.png ...: 6 frames (48x56) of a texture moving 2 px/frame."""
    big = texture(64, 80).astype(np.uint8)
    seq = tmp_path / "data" / "seq"
    seq.mkdir(parents=True)
    for k in range(6):
        iio.imwrite(seq / f"{k:05d}.png", np.ascontiguousarray(big[k:k + 48, 2 * k:2 * k + 56]))
    return seq


def test_train_flags_map_to_config():
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    a = p.parse_args(["v1.mp4", "dir", "--out", "x.pt", "--iters", "10", "--size", "96",
                      "--batch", "3", "--width", "0.5", "--lr", "1e-4", "--seed", "3",
                      "--no-colour-dropout", "--full-attention", "--no-scheduled-sampling",
                      "--no-cycle", "--device", "cpu"])
    cfg = config_from_args(a)
    assert (cfg.iters, cfg.crop, cfg.batch, cfg.width, cfg.lr, cfg.seed) == (10, 96, 3, 0.5,
                                                                           1e-4, 3)
    assert not (cfg.colour_dropout or cfg.restricted or cfg.scheduled_sampling or cfg.cycle)
    a = p.parse_args(["v", "--out", "x.pt", "--paper", "--device", "cpu"])
    assert config_from_args(a) == TrainConfig.paper()
    a = p.parse_args(["v", "--out", "x.pt", "--device", "cpu"])
    assert config_from_args(a) == TrainConfig.cpu()
    q = argparse.ArgumentParser()
    add_finetune_arguments(q)
    b = q.parse_args(["clip.mp4", "--out", "f.pt", "--minutes", "2", "--weights", "w.pt"])
    assert (b.video, b.out, b.minutes, b.weights, b.iters, b.device) == (
        "clip.mp4", "f.pt", 2.0, "w.pt", None, "auto")
    assert (b.mask, b.mask_frame, b.no_check) == (None, None, False)
    b = q.parse_args(["c.mp4", "--out", "f.pt", "--mask", "a.png", "--mask-frame", "3",
                      "--mask", "b.png", "--mask-frame", "-1", "--no-check"])
    assert (b.mask, b.mask_frame, b.no_check) == (["a.png", "b.png"], [3, -1], True)


def test_train_then_finetune_frame_folder(tmp_path, capsys, frame_folder):
    trained = tmp_path / "t.pt"
    tiny = ["--iters", "2", "--device", "cpu"]
    assert main(["train", str(frame_folder.parent), "--out", str(trained), "--size", "48",
                 "--batch", "1", "--width", "0.25", *tiny]) == 0
    assert read_checkpoint(trained)["step"] == 2
    err = capsys.readouterr().err
    assert "train 2/2" in err and "saved" in err
    # fine-tuning may not overwrite the checkpoint it starts from: exit 2, one line
    assert main(["finetune", str(frame_folder), "--out", str(trained), "--weights",
                 str(trained), *tiny]) == 2
    err = capsys.readouterr().err
    assert err.startswith("corrflow: error: ") and len(err.strip().splitlines()) == 1
    ft = tmp_path / "ft.pt"
    assert main(["finetune", str(frame_folder), "--out", str(ft), "--weights", str(trained),
                 *tiny]) == 0
    assert read_checkpoint(ft)["finetuned_from"] == str(trained.resolve())
    err = capsys.readouterr().err
    assert "fine-tune 2/2" in err and f"to {ft} - use it with --weights" in err
    assert "held-out check" in err and "colours only" in err


def test_cancelled_train_saves_its_checkpoint(tmp_path, capsys, frame_folder):
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    out = tmp_path / "c.pt"
    args = p.parse_args([str(frame_folder), "--out", str(out), "--iters", "5", "--size", "48",
                         "--batch", "1", "--width", "0.25", "--device", "cpu"])
    cancel = threading.Event()
    cancel.set()
    assert cmd_train(args, cancel) == 0
    assert read_checkpoint(out)["step"] == 0
    assert "--resume" in capsys.readouterr().err


def _write_mask(path, hw, box):
    from corrflow_napari.io import write_indexed_png
    m = np.zeros(hw, np.uint8)
    m[box] = 1
    write_indexed_png(path, m)
    return m


def test_finetune_masks_reach_finetune(tmp_path, capsys, frame_folder, monkeypatch):
    """--mask/--mask-frame are read as propagate reads them and reach finetune()."""
    import corrflow_napari.training as training
    from corrflow_napari.training import FinetuneResult
    seen = {}

    def fake(model, video, **kw):
        seen.update(kw, n=len(video))
        return FinetuneResult(model, 1, [1.0], 1.0, "iters", tmp_path / "ft.pt",
                              check="x", check_before=0.5, check_after=0.4, kept_start=True,
                              labelled=sorted(kw["keyframes"]), seconds_per_step=0.5)

    monkeypatch.setattr(training, "finetune", fake)
    a = _write_mask(tmp_path / "a.png", (48, 56), np.s_[5:20, 5:20])
    b = _write_mask(tmp_path / "b.png", (48, 56), np.s_[10:30, 20:40])
    ft = tmp_path / "ft.pt"
    assert main(["finetune", str(frame_folder), "--out", str(ft), "--device", "cpu",
                 "--mask", str(tmp_path / "a.png"), "--mask-frame", "3",
                 "--mask", str(tmp_path / "b.png"), "--mask-frame", "-1"]) == 0
    assert sorted(seen["keyframes"]) == [3, 5] and seen["n"] == 6 and seen["check"]
    assert np.array_equal(seen["keyframes"][3], a) and np.array_equal(seen["keyframes"][5], b)
    err = capsys.readouterr().err
    assert "masks of frame(s) 3, 5" in err and "did not improve (0.500 -> 0.400)" in err
    assert "saved the starting weights, unchanged," in err
    assert main(["finetune", str(frame_folder), "--out", str(ft), "--device", "cpu",
                 "--mask", str(tmp_path / "a.png"), "--no-check"]) == 0
    assert sorted(seen["keyframes"]) == [0] and seen["check"] is False
    capsys.readouterr()
    # the same checks as propagate's: one line, exit 2
    bad = [["--mask-frame", "2"],                                   # no --mask
           ["--mask", str(tmp_path / "a.png"), "--mask-frame", "9"],  # out of range
           ["--mask", str(tmp_path / "a.png"), "--mask", str(tmp_path / "b.png")],
           ["--mask", str(tmp_path / "missing.png")]]
    for extra in bad:
        assert main(["finetune", str(frame_folder), "--out", str(ft), "--device", "cpu",
                     *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("corrflow: error: ") and len(err.strip().splitlines()) == 1


def test_finetune_with_a_mask_end_to_end(tmp_path, capsys, frame_folder):
    from corrflow_napari.model import save_checkpoint
    from corrflow_napari.model.encoder import EncoderConfig
    from corrflow_napari.model.features import CorrFlowModel
    start = tmp_path / "start.pt"
    torch.manual_seed(0)
    model = CorrFlowModel(EncoderConfig(width=0.25))
    model.centroids.copy_(torch.linspace(-40, 40, 32).view(16, 2))
    save_checkpoint(start, model)
    _write_mask(tmp_path / "m.png", (48, 56), np.s_[10:30, 10:30])
    ft = tmp_path / "ft.pt"
    assert main(["finetune", str(frame_folder), "--out", str(ft), "--weights", str(start),
                 "--iters", "2", "--device", "cpu", "--mask", str(tmp_path / "m.png")]) == 0
    err = capsys.readouterr().err
    assert "masks of frame(s) 0" in err and "held-out check" in err
    check = read_checkpoint(ft)["finetune_check"]
    assert "painted masks" in check["check"] and 0 <= check["before"] <= 1
