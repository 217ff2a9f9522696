"""Training / fine-tuning: objective, schedules, checkpoints, resume, ablations (tiny sizes)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corrflow_napari.errors import InputError
from corrflow_napari.model import SHIPPED_WEIGHTS, load_model, read_checkpoint, save_checkpoint
from corrflow_napari.model import checkpoint as ckmod
from corrflow_napari.model.encoder import EncoderConfig
from corrflow_napari.model.features import CorrFlowModel
from corrflow_napari.training import (
    ClipSampler,
    FinetuneResult,
    TrainConfig,
    expand_video_paths,
    finetune,
    fit_centroids,
    interval_for,
    lr_at,
    make_optimizer,
    p_at,
    step_rngs,
    train,
    train_step,
)
from corrflow_napari.training.loop import _train


def texture_video(t=12, h=80, w=80, shift=2, seed=0) -> np.ndarray:
    """A smooth random colour texture translated by ``shift`` px (x) and shift/2 (y) a frame."""
    g = torch.Generator().manual_seed(seed)
    big = torch.rand(1, 3, (h + t * shift) // 8 + 4, (w + t * shift) // 8 + 4, generator=g)
    big = F.interpolate(big, scale_factor=8, mode="bicubic", align_corners=False).clamp(0, 1)[0]
    fr = [big[:, k * shift // 2:k * shift // 2 + h, k * shift:k * shift + w] for k in range(t)]
    return (torch.stack(fr).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def tiny(**kw) -> TrainConfig:
    base = dict(crop=64, batch=2, width=0.25, iters=4, interval=1, log_every=1000,
                save_every=0, centroid_clips=2, mean_window=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def video():
    return texture_video()


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)     # tiny tensors: one thread is faster on a shared 2-core box
    yield
    torch.set_num_threads(n)


def _tiny_model(cfg, sampler):
    torch.manual_seed(0)
    model = CorrFlowModel(EncoderConfig(width=cfg.width))
    model.centroids.copy_(fit_centroids(sampler, cfg))
    return model


def _steps(model, sampler, cfg, n, start=0):
    opt = make_optimizer(model, cfg)
    losses = []
    for s in range(start, start + n):
        rng, gen = step_rngs(cfg.seed, 0, s)
        losses.append(train_step(model, opt, sampler.sample(cfg.batch, rng), cfg, s, gen))
    return losses


def test_loss_decreases(video):
    cfg = tiny(iters=20, lr_milestones=(), crop=48, lr=5e-4)
    sampler = ClipSampler([video], cfg)
    model = _tiny_model(cfg, sampler)
    losses = [p["loss"] for p in _steps(model, sampler, cfg, 20)]
    assert all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.8 * first, (first, last)


def test_schedules():
    cfg = TrainConfig(iters=101)
    assert p_at(0, cfg) == pytest.approx(0.9)
    assert p_at(100, cfg) == pytest.approx(0.6)
    assert p_at(50, cfg) == pytest.approx(0.75)
    ps = [p_at(s, cfg) for s in range(101)]
    assert np.allclose(np.diff(ps), -0.3 / 100)
    cfg = TrainConfig(iters=100, lr=2e-4)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == lrs[39] == 2e-4
    assert lrs[40] == lrs[59] == 1e-4
    assert lrs[60] == lrs[79] == 5e-5
    assert lrs[80] == lrs[99] == 2.5e-5
    assert TrainConfig.paper().lr == 2e-4 and TrainConfig.paper().batch == 6
    assert TrainConfig.paper().betas == (0.9, 0.999) and TrainConfig.paper().radius == 6


def test_train_step_applies_schedule(video):
    cfg = tiny(iters=10)
    sampler = ClipSampler([video], cfg)
    model = _tiny_model(cfg, sampler)
    opt = make_optimizer(model, cfg)
    rng, gen = step_rngs(0, 0, 8)
    parts = train_step(model, opt, sampler.sample(2, rng), cfg, 8, gen)
    assert parts["lr"] == opt.param_groups[0]["lr"] == pytest.approx(2e-4 / 8)
    assert parts["p_gt"] == pytest.approx(0.9 - 0.3 * 8 / 9)


def test_sampler_lazy_interval_and_upscale():
    class FakeVideo:                       # lazily indexed; refuses to be loaded whole
        def __init__(self, n, h, w, fps):
            self.n, self.h, self.w, self.fps, self.read = n, h, w, fps, []

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            if not isinstance(i, int):
                raise TypeError("only single frames")
            self.read.append(i)
            return np.full((self.h, self.w, 3), i % 256, np.uint8)

        def __array__(self, *a, **k):
            raise AssertionError("whole video loaded")

    cfg = TrainConfig(crop=64, batch=2, width=0.25)
    long_v = FakeVideo(100_000, 40, 50, fps=25.0)     # smaller than the crop: upscaled
    sampler = ClipSampler([long_v, FakeVideo(5, 70, 90, fps=None)], cfg)
    assert sampler.intervals == [4, 2]                 # 25 fps -> 4; short video shortened
    clips = sampler.sample(6, np.random.default_rng(0))
    assert clips.shape == (6, 3, 3, 64, 64) and clips.dtype == torch.float32
    assert len(long_v.read) <= 18
    read = np.array(long_v.read).reshape(-1, 3)
    assert (np.diff(read, axis=1) == 4).all()
    assert interval_for(12, cfg) == 2 and interval_for(None, cfg) == 4
    assert interval_for(30, TrainConfig(interval=1)) == 1
    with pytest.raises(InputError):
        ClipSampler([np.zeros((2, 32, 32, 3), np.uint8)], cfg)


def test_sampler_grey_and_rgba_frames():
    cfg = TrainConfig(crop=32, batch=1, width=0.25, interval=1, flip=False, scale=(1.0, 1.0))
    grey = [np.full((32, 32), 200, np.uint8)] * 3             # array-like of (H, W) frames
    rgba = np.full((3, 32, 32, 4), 100, np.uint8)
    rgba[..., 3] = 7                                          # alpha is dropped
    for video, value in ((grey, 200), (rgba, 100)):
        clip = ClipSampler([video], cfg).sample(1, np.random.default_rng(0))
        assert clip.shape == (1, 3, 3, 32, 32)
        assert torch.allclose(clip, torch.full_like(clip, value / 255))


def test_expand_video_paths(tmp_path):
    (tmp_path / "clips").mkdir()
    for n in ("a.mp4", "b.MOV", "notes.txt"):
        (tmp_path / "clips" / n).write_bytes(b"")
    davis = tmp_path / "davis"
    for seq in ("bear", "boat"):
        for sub in ("JPEGImages/480p", "Annotations/480p"):
            (davis / sub / seq).mkdir(parents=True)
            (davis / sub / seq / "00000.jpg").write_bytes(b"")
    one = tmp_path / "frames"
    one.mkdir()
    (one / "0.png").write_bytes(b"")
    got = expand_video_paths([tmp_path / "clips", davis, one])
    names = [p.relative_to(tmp_path).as_posix() for p in got]
    assert names == ["clips/a.mp4", "clips/b.MOV", "davis/JPEGImages/480p/bear",
                     "davis/JPEGImages/480p/boat", "frames"]
    with pytest.raises(InputError):
        expand_video_paths([tmp_path / "missing"])


def _state(model):
    return {k: v.clone() for k, v in model.encoder.state_dict().items()}


def test_checkpoint_resume_identical(video, tmp_path):
    cfg = tiny(iters=4)
    straight = _train([video], tmp_path / "a.pt", cfg, log=lambda m: None)
    assert straight.step == 4 and not straight.cancelled

    cancel = threading.Event()

    def progress(step, total, loss):
        assert total == 4 and np.isfinite(loss)
        if step == 2:
            cancel.set()

    first = _train([video], tmp_path / "b.pt", cfg, progress=progress, cancel=cancel,
                      log=lambda m: None)
    assert first.cancelled and first.step == 2
    ck = read_checkpoint(tmp_path / "b.pt")
    assert ck["step"] == 2 and ck["train_config"]["iters"] == 4 and "optimizer" in ck
    with pytest.raises(InputError):                       # never overwritten silently
        train([video], tmp_path / "b.pt", cfg, log=lambda m: None)
    resumed = _train([video], tmp_path / "b.pt", cfg, resume=True, log=lambda m: None)
    assert resumed.step == 4
    a, b = read_checkpoint(tmp_path / "a.pt"), read_checkpoint(tmp_path / "b.pt")
    assert a["step"] == b["step"] == 4
    for k, v in a["encoder"].items():
        assert torch.equal(v, b["encoder"][k]), k
    assert torch.equal(a["centroids"], b["centroids"])
    for k, v in _state(straight.model).items():
        assert torch.equal(v.cpu(), a["encoder"][k]), k
    # a checkpoint round-trips into an identical model
    m = load_model(tmp_path / "a.pt", device="cpu")
    for k, v in m.encoder.state_dict().items():
        assert torch.equal(v, a["encoder"][k])


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = CorrFlowModel(EncoderConfig(width=0.25))
    path = tmp_path / "w.pt"
    save_checkpoint(path, model, step=1)
    before = read_checkpoint(path)

    real_save = torch.save

    def broken_save(obj, fh, *a, **k):   # write half a file, then "crash"
        real_save(obj, fh, *a, **k)
        fh.seek(0)
        fh.truncate(100)
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ckmod.torch, "save", broken_save)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, step=2)
    monkeypatch.undo()
    after = read_checkpoint(path)
    assert after["step"] == 1
    for k, v in before["encoder"].items():
        assert torch.equal(v, after["encoder"][k])
    assert [p.name for p in tmp_path.iterdir()] == ["w.pt"]   # no temp file left behind


@pytest.mark.parametrize("flag", ["colour_dropout", "restricted", "scheduled_sampling",
                                  "cycle"])
def test_ablation_flags_run(video, flag):
    cfg = tiny(**{flag: False})
    sampler = ClipSampler([video], cfg)
    model = _tiny_model(cfg, sampler)
    parts = _steps(model, sampler, cfg, 1)[0]
    assert np.isfinite(parts["loss"])
    assert ("cycle_010" in parts) == (flag != "cycle")
    if flag == "scheduled_sampling":
        assert parts["gt_fraction"] == 1.0


def test_finetune_copy_best_and_refusals(video, tmp_path):
    src = tmp_path / "src.pt"
    torch.manual_seed(0)
    save_checkpoint(src, CorrFlowModel(EncoderConfig(width=0.25)))   # zero centroids: fitted
    src_bytes = src.read_bytes()
    model = load_model(src, device="cpu")
    before = _state(model)
    cfg = TrainConfig.finetune(crop=64, batch=1, centroid_clips=2, mean_window=2, interval=1)
    for bad in (src, SHIPPED_WEIGHTS):
        with pytest.raises(InputError):
            finetune(model, video, iters=1, out=bad, config=cfg)
    seen = []
    out = tmp_path / "ft.pt"
    res = finetune(model, video, iters=4, out=out, config=cfg, check=False,
                   progress=lambda s, t, loss: seen.append((s, t)))
    assert isinstance(res, FinetuneResult)
    assert (res.steps, len(res.losses), res.stopped) == (4, 4, "iters")
    assert np.isfinite(res.best_loss) and res.best_loss <= max(res.losses)
    ft = res.model
    assert ft is not model and seen[-1] == (4, 4)
    assert not ft.training and ft.centroids.abs().sum() > 0
    for k, v in model.encoder.state_dict().items():            # original untouched
        assert torch.equal(v, before[k]), k
    assert model.centroids.abs().sum() == 0
    assert any(not torch.equal(v, before[k]) for k, v in ft.encoder.state_dict().items()
               if v.is_floating_point())
    saved = read_checkpoint(out)                                # best weights on disk
    for k, v in ft.encoder.state_dict().items():
        assert torch.equal(v, saved["encoder"][k]), k
    assert ft.weights_path == res.path == out.resolve()
    with pytest.raises(InputError):                             # nor its own output next
        finetune(ft, video, iters=1, out=out, config=cfg)
    assert src.read_bytes() == src_bytes                         # source file untouched
    # stops on cancel and on the wall-time limit
    cancel = threading.Event()
    cancel.set()
    stopped = finetune(model, video, iters=50, cancel=cancel, config=cfg)
    assert (stopped.steps, stopped.stopped, stopped.path) == (0, "cancelled", None)
    assert stopped.model.weights_path is None and stopped.best_loss == float("inf")
    quick = finetune(model, video, minutes=1e-6, config=cfg)
    assert quick.steps <= 1 and quick.stopped == "minutes"
