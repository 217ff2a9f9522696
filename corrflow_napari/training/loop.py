"""Training from scratch (or from a checkpoint): :func:`train` runs the optimisation loop,
writes checkpoints atomically, resumes exactly, and runs under ``torchrun``."""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..model.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from ..model.encoder import EncoderConfig
from ..model.features import CorrFlowModel
from .config import TrainConfig
from .data import ClipSampler, fit_centroids, step_rngs
from .distributed import (
    Ranks,
    average_buffers,
    cancel_requested,
    end_distributed,
    init_distributed,
    wrap_encoder,
)
from .objective import make_optimizer, train_step


def _noop(*_a, **_k):
    return None


@dataclass
class TrainResult:
    """What a training run ended with: the checkpoint ``path``, the trained ``model``,
    the last ``step`` reached, this run's per-step ``losses`` and whether it was
    ``cancelled``."""

    path: Path
    model: CorrFlowModel
    step: int
    losses: list = field(default_factory=list)
    cancelled: bool = False


def check_out_path(out: Path, *sources) -> None:
    """Refuse an output checkpoint that would overwrite the shipped weights, one of the
    ``sources`` (the checkpoint a run starts from) or a folder (InputError)."""
    from ..model import SHIPPED_WEIGHTS
    o = out.resolve()
    if o == Path(SHIPPED_WEIGHTS).resolve():
        raise InputError(f"--out {out} is the shipped weights file; write to another file.")
    for s in sources:
        if s is not None and o == Path(s).resolve():
            raise InputError(f"--out {out} is the checkpoint training starts from; "
                             "write to another file so the original is kept.")
    if o.is_dir():
        raise InputError(f"--out {out} is a folder; give a .pt file name.")


def train(videos, out, config: TrainConfig | None = None, init=None, resume: bool = False,
          progress: Callable[[int, int, float], None] | None = None,
          cancel: threading.Event | None = None, log: Callable[[str], None] = print,
          device: str | torch.device = "auto") -> Path:
    """Train CorrFlow on ``videos`` and write the checkpoint ``out``; returns ``Path(out)``
    (:func:`_train` returns the whole :class:`TrainResult`).

    videos: paths (video files, frame folders, folders of those), Videos, or (T, H, W, 3)
        uint8 arrays; frames are read lazily.
    init: a checkpoint to start from (its width/centroids win over the config's).
    resume: continue from ``out`` if it exists (optimiser, step and schedules restored; the
        random streams are a function of (seed, rank, step), so a resumed run reproduces
        the uninterrupted one exactly). Without ``resume`` an existing ``out`` is refused.
    progress(step, total, loss) is called after every step; ``cancel`` (a threading.Event)
        is checked every step: when set, the current state is saved and train returns.
    Checkpoints are written atomically every ``config.save_every`` steps and at the end.

    Under ``torchrun --nproc_per_node N`` it joins the process group (NCCL on CUDA, gloo
    on CPU), wraps the encoder in DistributedDataParallel and keeps per-rank BatchNorm,
    whose running statistics are averaged over the ranks before every checkpoint, so all
    ranks stay identical (:mod:`.distributed`). Each rank samples its own clips (seeded
    by rank); only rank 0 writes checkpoints, logs and reports progress.
    """
    return _train(videos, out, config, init=init, resume=resume, progress=progress,
                  cancel=cancel, log=log, device=device).path


def _train(videos, out, config: TrainConfig | None = None, init=None, resume: bool = False,
           progress=None, cancel=None, log=print, device="auto") -> TrainResult:
    """:func:`train`, returning the :class:`TrainResult`."""
    config = config or TrainConfig.paper()
    out = Path(out)
    check_out_path(out, init)
    if out.exists() and not resume:
        raise InputError(f"{out} already exists; pass --resume to continue it, or choose "
                         "another --out (it is never overwritten silently).")
    ranks, dev = init_distributed(device)
    if not ranks.main:
        log, progress = _noop, None
    try:
        result = _train_loop(videos, out, config, init, resume, progress, cancel, log, dev,
                             ranks)
    except BaseException:
        end_distributed(ranks)
        raise
    end_distributed(ranks, finished=True)
    return result


def _start_model(out: Path, config: TrainConfig, init, resume: bool, log):
    """(model, first step, optimiser state or None): resumed from ``out``, started from
    ``init``, or new (same initial weights on every rank)."""
    if resume and out.exists():
        ck = read_checkpoint(out)
        model = model_from_checkpoint(ck, source=str(out))
        start_step = int(ck.get("step", 0))
        old = ck.get("train_config")
        if old:
            diff = {k: (old.get(k), v) for k, v in config.to_dict().items()
                    if k in old and old.get(k) != v}
            if diff:
                log(f"resume: config differs from the checkpoint's: {diff}")
        log(f"resuming {out} at step {start_step}/{config.iters}")
        return model, start_step, ck.get("optimizer")
    if init is not None:
        model = model_from_checkpoint(read_checkpoint(init), source=str(init))
        if model.config.width != config.width:
            log(f"init {init}: using its width {model.config.width} (config: {config.width})")
        log(f"starting from {init}")
        return model, 0, None
    if resume:
        log(f"{out} does not exist yet: starting a new run")
    torch.manual_seed(config.seed)
    return CorrFlowModel(EncoderConfig(width=config.width)), 0, None


def _train_loop(videos, out: Path, config: TrainConfig, init, resume: bool, progress, cancel,
                log, dev: torch.device, ranks: Ranks) -> TrainResult:
    model, start_step, opt_state = _start_model(out, config, init, resume, log)
    model.to(dev)
    sampler = ClipSampler(videos, config, log=log)
    log(f"{len(sampler)} training video(s); frame steps {sorted(set(sampler.intervals))}; "
        f"crop {config.crop}, batch {config.batch} x {ranks.world} process(es), "
        f"{sum(p.numel() for p in model.encoder.parameters()) / 1e6:.2f}M parameters, "
        f"device {dev}")
    if not bool(model.centroids.abs().sum() > 0) and ranks.main:
        t0 = time.perf_counter()
        model.centroids.copy_(fit_centroids(sampler, config, model.centroids.shape[0]))
        log(f"fitted {model.centroids.shape[0]} (a, b) colour centroids on "
            f"{config.centroid_clips * 3} training frames ({time.perf_counter() - t0:.1f} s)")
    optimizer = make_optimizer(model, config)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
    encoder = wrap_encoder(model, dev, ranks)

    def save(step: int, recent) -> None:
        average_buffers(model.encoder, ranks)   # every rank: BN running stats of all ranks
        if not ranks.main:
            return
        save_checkpoint(out, model, optimizer=optimizer.state_dict(), step=step,
                        train_config=config.to_dict(), world_size=ranks.world,
                        loss_mean=float(np.mean(recent)) if recent else None)

    losses: list[float] = []
    recent: deque = deque(maxlen=max(1, config.mean_window))
    step = start_step
    cancelled = False
    t_last, s_last = time.perf_counter(), step
    if step >= config.iters:
        log(f"{out} is already at step {step} >= iters {config.iters}: nothing to do")
    while step < config.iters:
        if cancel_requested(cancel, ranks):
            cancelled = True
            break
        np_rng, gen = step_rngs(config.seed, ranks.rank, step)
        clip = sampler.sample(config.batch, np_rng).to(dev, non_blocking=True)
        parts = train_step(model, optimizer, clip, config, step, gen, encoder=encoder)
        step += 1
        losses.append(parts["loss"])
        recent.append(parts["loss"])
        if progress is not None:
            progress(step, config.iters, parts["loss"])
        if step % max(1, config.log_every) == 0 or step == config.iters or step == 1:
            now = time.perf_counter()
            rate = (step - s_last) / max(now - t_last, 1e-9)
            t_last, s_last = now, step
            log(f"step {step}/{config.iters} loss {parts['loss']:.4f} "
                f"mean{len(recent)} {np.mean(recent):.4f} lr {parts['lr']:.2e} "
                f"p {parts['p_gt']:.3f} {rate:.3g} step/s")
        if config.save_every and step % config.save_every == 0 and step < config.iters:
            save(step, recent)
    save(step, recent)
    if cancelled:
        log(f"cancelled at step {step}: saved {out} (continue with --resume)")
    else:
        log(f"saved {out} (step {step})")
    return TrainResult(out, model, step, losses, cancelled)
