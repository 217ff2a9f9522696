"""Time-limited, resumable training of the paper's configuration from a training bundle.

Reads the bundle written by ``scripts/build_training_bundle.py`` (JPEG frames + manifest),
decodes it once into the training device's memory (uint8), samples 3-frame clips there
(random scale, crop, flip), and trains the CorrFlow objective of
``corrflow_napari.training`` (the same ``train_step`` and restricted attention as on the
CPU) with bf16 autocast and channels-last on CUDA. Every run resumes from
``OUT/last.pt`` when it exists and stops itself after ``--minutes`` (default 9), writing
the checkpoint atomically and appending to ``OUT/loss.csv``, so several short runs chain
into one long one (the learning-rate and scheduled-sampling schedules run over
``--iters`` steps in total, across runs).

    python scripts/train_gpu.py runs/bundle runs/gpu --minutes 9            # on a GPU
    python scripts/train_gpu.py runs/bundle runs/tiny --tiny --minutes 0.3  # CPU check

Batch: ``--batch 0`` (default) probes the largest power of two up to 128 that fits the
GPU (a forward/backward at that size), 2 on the CPU. The learning rate is the paper's
2e-4 for batch 6, scaled by sqrt(batch / 6) (Adam; stated in the model card).
Prints steps/s and images/s (3 frames per clip).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from corrflow_napari.device import pick_device
from corrflow_napari.model.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from corrflow_napari.model.colour import fit_ab_centroids
from corrflow_napari.model.encoder import EncoderConfig
from corrflow_napari.model.features import CorrFlowModel
from corrflow_napari.model.inference_settings import InferenceSettings
from corrflow_napari.training import TrainConfig, make_optimizer, train_step

PAPER_BATCH = 6


# --------------------------------------------------------------------------- data
class BundleClips:
    """The bundle's videos as uint8 tensors (T, 3, H, W) on ``device``; ``sample(b, rng)``
    -> (B, 3, 3, crop, crop) float RGB in [0, 1] (the layout ``train_step`` takes)."""

    def __init__(self, folder: Path, device: torch.device, config: TrainConfig):
        manifest = json.loads((folder / "manifest.json").read_text())
        self.config, self.device = config, device
        self.videos, self.steps, self.names = [], [], []
        for v in manifest["videos"]:
            files = sorted((folder / v["name"]).glob("*.jpg"))
            if len(files) < 3:
                continue
            frames = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
            self.videos.append(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
                               .to(device))
            step = max(1, round(float(v.get("fps") or 6.0) / 6.0))   # the paper's 6 fps
            self.steps.append(min(step, (len(files) - 1) // 2))
            self.names.append(v["name"])
        if not self.videos:
            raise SystemExit(f"{folder}: no video with 3 or more frames")
        starts = np.array([len(v) - 2 * s for v, s in zip(self.videos, self.steps)], float)
        self.weights = starts / starts.sum()           # every possible clip equally likely
        self.frames = int(sum(len(v) for v in self.videos))
        self.bytes = int(sum(v.numel() for v in self.videos))

    def sample(self, batch: int, rng: np.random.Generator) -> torch.Tensor:
        c = self.config
        out = []
        for _ in range(batch):
            vi = int(rng.choice(len(self.videos), p=self.weights))
            v, s = self.videos[vi], self.steps[vi]
            t0 = int(rng.integers(len(v) - 2 * s))
            x = v[t0:t0 + 2 * s + 1:s]                               # 3, 3, H, W uint8
            h, w = x.shape[-2:]
            lo, hi = c.scale
            u = math.exp(rng.uniform(math.log(lo), math.log(hi))) if hi > lo else lo
            sc = max(c.crop / min(h, w) * u, c.crop / min(h, w))
            side = min(max(1, int(round(c.crop / sc))), h, w)
            y0, x0 = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
            x = x[..., y0:y0 + side, x0:x0 + side].float().div_(255)
            if side != c.crop:
                x = F.interpolate(x, size=(c.crop, c.crop), mode="bilinear",
                                  align_corners=False, antialias=side > c.crop).clamp_(0, 1)
            if c.flip and rng.random() < 0.5:
                x = x.flip(-1)
            out.append(x)
        return torch.stack(out)


# --------------------------------------------------------------------------- run
def _config(args, batch: int) -> TrainConfig:
    if args.tiny:
        base = TrainConfig.cpu(crop=64, width=0.25)
    else:
        base = TrainConfig.paper()
    lr = 2e-4 * math.sqrt(batch / PAPER_BATCH) * args.lr_scale
    if args.crop:
        base = replace(base, crop=args.crop)
    return replace(base, batch=batch, iters=args.iters or 10**9, lr=lr, seed=args.seed,
                   save_every=0, log_every=args.log_every, lab_mix=args.lab_mix)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _probe_batch(model, data: BundleClips, config: TrainConfig, device) -> int:
    """Largest power-of-two batch <= 128 for which one training step fits in memory."""
    b = 128
    while b > 1:
        try:
            opt = make_optimizer(model, config)
            clip = data.sample(b, np.random.default_rng(0))
            with _autocast(device):
                train_step(model, opt, clip, replace(config, batch=b), 0)
            del opt, clip
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            return b
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            b //= 2
    return 1


FIT_AFTER = (10, 40)   # --iters 0 times steps 10..40 (after cudnn's autotuning)
REFIT_S = 300.0        # --iters 0 refits the schedule this often (seconds)


def _fit_schedule(config: TrainConfig, step: int, rate: float, deadline: float,
                  max_steps: int, start_step: int, quiet: bool = False
                  ) -> tuple[TrainConfig, int]:
    """Schedule length for ``--iters 0``: the steps that fit before ``deadline`` at ``rate``
    (steps/s), 3% kept for the checkpoint. Fitted after FIT_AFTER, then again every
    REFIT_S from the rate since the last fit, so that a CPU run slowed (or sped up) by
    other jobs still ends its learning-rate schedule at the deadline."""
    iters = max(step + 1, step + int(rate * max(deadline - time.monotonic(), 0.0) * 0.97))
    if not quiet:
        print(f"schedule fitted to the time left: {iters} steps ({rate:.2f} steps/s)",
              flush=True)
    config = replace(config, iters=iters)
    return config, (iters if not max_steps else min(iters, start_step + max_steps))


def run(args) -> dict:
    device = pick_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "last.pt"
    deadline = time.monotonic() + args.minutes * 60
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    start_step, opt_state = 0, None
    if ckpt.exists():
        ck = read_checkpoint(ckpt)
        model = model_from_checkpoint(ck, source=str(ckpt))
        start_step, opt_state = int(ck.get("step", 0)), ck.get("optimizer")
        batch = int(ck["train_config"]["batch"])
        print(f"resuming {ckpt} at step {start_step}", flush=True)
    elif args.init:
        model = model_from_checkpoint(read_checkpoint(args.init), source=str(args.init))
        batch = args.batch
        print(f"starting from {args.init} (width {model.config.width})", flush=True)
    else:
        torch.manual_seed(args.seed)
        width = 0.25 if args.tiny else args.width
        model = CorrFlowModel(EncoderConfig(width=width))
        if args.inference_from:
            model.inference = InferenceSettings.from_dict(
                read_checkpoint(args.inference_from).get("inference"))
        batch = args.batch
    model.to(device)
    if device.type == "cuda":
        model.encoder.to(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    config = _config(args, batch or 2)
    data = BundleClips(Path(args.bundle), device, config)
    print(f"bundle: {len(data.videos)} videos, {data.frames} frames, "
          f"{data.bytes / 2**20:.0f} MB on {device} ({time.perf_counter() - t0:.1f} s)",
          flush=True)
    if not bool(model.centroids.abs().sum() > 0):
        rng = np.random.default_rng(args.seed)
        clips = data.sample(16, rng).flatten(0, 1).permute(0, 2, 3, 1)
        model.centroids.copy_(torch.from_numpy(fit_ab_centroids(
            (clips * 255).round().to(torch.uint8).cpu().numpy(), k=16, seed=args.seed)))
    if not batch:
        batch = _probe_batch(model, data, config, device) if device.type == "cuda" else 2
        config = _config(args, batch)
        print(f"batch {batch} (probed), lr {config.lr:.2e}", flush=True)
    else:
        config = _config(args, batch)
    optimizer = make_optimizer(model, config)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
    log_path = out / "loss.csv"
    new_log = not log_path.exists()
    log = open(log_path, "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "loss", "forward_01", "forward_12", "cycle_010",
                         "cycle_01210", "lr", "p_gt", "steps_per_s", "images_per_s",
                         "elapsed_s"])
    step, n_window, t_window, t_run = start_step, 0, time.perf_counter(), time.perf_counter()
    losses: list[float] = []

    def save() -> None:
        save_checkpoint(ckpt, model, optimizer=optimizer.state_dict(), step=step,
                        train_config=config.to_dict(), bundle=str(args.bundle),
                        loss_mean=float(np.mean(losses[-100:])) if losses else None)

    save_every_s, last_save = 120.0, time.monotonic()
    fit = not args.iters          # --iters 0: the schedule is fitted to this run's minutes
    fit_t0, fit_step = time.monotonic(), start_step
    last = config.iters if not args.steps else min(config.iters, start_step + args.steps)
    while step < last and time.monotonic() < deadline and not stop["flag"]:
        if fit and (step == start_step + FIT_AFTER[1] or (
                step > start_step + FIT_AFTER[1] and time.monotonic() - fit_t0 > REFIT_S)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            rate = (step - fit_step) / max(time.monotonic() - fit_t0, 1e-9)
            config, last = _fit_schedule(config, step, rate, deadline, args.steps, start_step,
                                         quiet=step != start_step + FIT_AFTER[1])
            fit_t0, fit_step = time.monotonic(), step
        if fit and step == start_step + FIT_AFTER[0]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            fit_t0, fit_step = time.monotonic(), step
        ss = np.random.SeedSequence([args.seed, step])
        rng = np.random.default_rng(ss)
        gen = torch.Generator().manual_seed(int(ss.generate_state(1)[0]))
        clip = data.sample(config.batch, rng)
        if device.type == "cuda":
            clip = clip.contiguous(memory_format=torch.contiguous_format)
        with _autocast(device):
            parts = train_step(model, optimizer, clip, config, step, gen)
        step += 1
        n_window += 1
        losses.append(parts["loss"])
        if step % config.log_every == 0 or step == start_step + 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            sps = n_window / max(now - t_window, 1e-9)
            writer.writerow([step, f"{parts['loss']:.5f}"]
                            + [f"{parts.get(k, float('nan')):.5f}" for k in
                               ("forward_01", "forward_12", "cycle_010", "cycle_01210")]
                            + [f"{parts['lr']:.3e}", f"{parts['p_gt']:.3f}", f"{sps:.3f}",
                               f"{sps * config.batch * 3:.1f}", f"{now - t_run:.1f}"])
            log.flush()
            print(f"step {step}/{config.iters} loss {parts['loss']:.4f} "
                  f"mean100 {np.mean(losses[-100:]):.4f} {sps:.2f} steps/s "
                  f"{sps * config.batch * 3:.0f} images/s", flush=True)
            n_window, t_window = 0, now
        if time.monotonic() - last_save > save_every_s:
            save()
            last_save = time.monotonic()
    save()
    log.close()
    if args.export:
        save_checkpoint(args.export, model, half=True, step=step, bundle=str(args.bundle))
        print(f"exported fp16 weights to {args.export}", flush=True)
    elapsed = time.perf_counter() - t_run
    result = {"step": step, "start_step": start_step, "iters": config.iters,
              "batch": config.batch, "lr": config.lr,
              "steps_per_s": (step - start_step) / max(elapsed, 1e-9),
              "images_per_s": (step - start_step) * config.batch * 3 / max(elapsed, 1e-9),
              "loss_mean_last100": float(np.mean(losses[-100:])) if losses else None,
              "device": str(device), "checkpoint": str(ckpt)}
    print(json.dumps(result), flush=True)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bundle", help="folder written by scripts/build_training_bundle.py")
    p.add_argument("out", help="run folder: last.pt and loss.csv (resumed when present)")
    p.add_argument("--minutes", type=float, default=9.0, help="stop cleanly after this")
    p.add_argument("--steps", type=int, default=0,
                   help="also stop after this many steps in this run (0: no limit)")
    p.add_argument("--iters", type=int, default=100_000,
                   help="schedule length over all chained runs (0: fit it to this one run's "
                        "--minutes, from the speed of its first steps; not for chaining)")
    p.add_argument("--batch", type=int, default=0, help="clips per step (0: probe the GPU)")
    p.add_argument("--width", type=float, default=1.0, help="encoder width (1.0 = paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--device", default="auto")
    p.add_argument("--inference-from", default=None,
                   help="copy the inference settings of this checkpoint into the new model")
    p.add_argument("--init", default=None,
                   help="start a new run from this checkpoint (e.g. the shipped weights) "
                        "instead of random weights; ignored when OUT/last.pt exists")
    p.add_argument("--crop", type=int, default=None, help="crop size (default: 256, tiny 64)")
    p.add_argument("--export", default=None,
                   help="also write fp16 weights only (no optimiser state) here at the end")
    p.add_argument("--tiny", action="store_true",
                   help="64-px crops, quarter width: a CPU check of the same code")
    p.add_argument("--lr-scale", type=float, default=1.0,
                   help="multiply the learning rate (2e-4 x sqrt(batch / 6)) by this")
    p.add_argument("--lab-mix", type=float, default=0.0,
                   help="train through the inference mixture (TrainConfig.lab_mix)")
    return p


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
