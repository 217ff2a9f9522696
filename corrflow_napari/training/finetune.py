"""Fine-tuning a copy of trained weights on the user's own clip with the training
objective: :func:`finetune` returns a :class:`FinetuneResult`."""
from __future__ import annotations

import copy
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model.checkpoint import save_checkpoint
from ..model.features import CorrFlowModel
from .config import TrainConfig, p_at
from .data import ClipSampler, fit_centroids, step_rngs
from .loop import _noop, check_out_path
from .objective import make_optimizer, train_step


@dataclass
class FinetuneResult:
    """What a fine-tuning run ended with.

    model: the fine-tuned copy (best weights, eval mode; ``model.weights_path`` is the
        saved file or None). steps: optimisation steps run. losses: the loss of every
        step. best_loss: the lowest running-mean loss (inf when no step ran).
    stopped: why it ended: "iters" (all steps done), "minutes" (wall-time limit) or
        "cancelled". path: the checkpoint written (resolved), or None.
    """

    model: CorrFlowModel
    steps: int
    losses: list = field(default_factory=list)
    best_loss: float = math.inf
    stopped: str = "iters"
    path: Path | None = None


def finetune(model: CorrFlowModel, frames, iters: int | None = None,
             minutes: float | None = None,
             progress: Callable[[int, int | None, float], None] | None = None,
             cancel: threading.Event | None = None, out=None,
             config: TrainConfig | None = None,
             log: Callable[[str], None] | None = None) -> FinetuneResult:
    """Fine-tune a COPY of ``model`` on one video with the training objective.

    frames: a Video or a (T, H, W, 3) uint8 array (the user's clip).
    Stops after ``iters`` steps, after ``minutes`` of wall time, or when ``cancel`` is set
    (whichever comes first; neither given: ``config.iters``). The result's model is the
    copy with the weights of lowest running-mean loss (window ``config.mean_window``), in
    eval mode on ``model``'s device. The original model (and its file) is never modified.
    With ``out`` the best weights are saved there atomically after an improvement (at
    most every 10 s, and at the end), so a crash leaves the last good checkpoint; ``out``
    may not be the shipped weights or the file ``model`` was loaded from
    (``model.weights_path``).
    progress(step, total, loss): total is None when only ``minutes`` bounds the run.
    Defaults: :meth:`TrainConfig.finetune` (measurements behind them:
    docs/measurements-training.md).
    """
    if not isinstance(model, CorrFlowModel):
        raise InputError("only CorrFlow weights can be fine-tuned (not the Lab baseline).")
    log = log or _noop
    config = config or TrainConfig.finetune()
    if model.inference.frame_bn and config.frozen_bn:
        # the model normalises each frame with its own statistics at inference: train with
        # the batch's statistics too, not with the stored running ones
        config = replace(config, frozen_bn=False)
    if iters is None and minutes is None:
        iters = config.iters
    if iters is not None:
        if iters < 1:
            raise InputError(f"fine-tuning needs iters >= 1, got {iters}.")
        config = replace(config, iters=int(iters))
    source = getattr(model, "weights_path", None)
    if out is not None:
        out = Path(out)
        check_out_path(out, source)
    dev = model.device
    ft = copy.deepcopy(model).to(dev)
    ft.weights_path = None
    for p in ft.parameters():
        p.requires_grad_(True)
    sampler = ClipSampler([frames], config, log=log)
    if not bool(ft.centroids.abs().sum() > 0):
        ft.centroids.copy_(fit_centroids(sampler, config, ft.centroids.shape[0]).to(dev))
    optimizer = make_optimizer(ft, config)
    losses: list[float] = []
    recent: deque = deque(maxlen=max(1, config.mean_window))
    best_state, best_mean, dirty, last_save = None, math.inf, False, -math.inf
    t_start = time.perf_counter()
    deadline = t_start + minutes * 60 if minutes is not None else math.inf
    step, cancelled = 0, False

    def encoder_state() -> dict:
        return {k: v.detach().clone() for k, v in ft.encoder.state_dict().items()}

    def write():
        nonlocal dirty, last_save
        if out is not None and best_state is not None:
            keep = encoder_state()
            ft.encoder.load_state_dict(best_state)
            save_checkpoint(out, ft, step=step, train_config=config.to_dict(),
                            finetuned_from=str(source) if source else None,
                            loss_mean=best_mean)
            ft.encoder.load_state_dict(keep)
            dirty, last_save = False, time.perf_counter()

    try:
        while (iters is None or step < iters) and time.perf_counter() < deadline:
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            np_rng, gen = step_rngs(config.seed, 0, step)
            if iters is not None:
                frac = step / max(1, iters - 1)
            else:
                frac = (time.perf_counter() - t_start) / max(deadline - t_start, 1e-9)
            clip = sampler.sample(config.batch, np_rng).to(dev)
            parts = train_step(ft, optimizer, clip, config, step, gen,
                               p_gt=p_at(step, config, frac), lr=config.lr)
            step += 1
            losses.append(parts["loss"])
            recent.append(parts["loss"])
            if len(recent) == recent.maxlen or (iters is not None and step == iters
                                                and best_state is None):
                m = float(np.mean(recent))
                if m < best_mean:
                    best_mean, dirty = m, True
                    best_state = encoder_state()
                    if time.perf_counter() - last_save >= 10:
                        write()
            if progress is not None:
                progress(step, iters, parts["loss"])
            if step % max(1, config.log_every) == 0:
                log(f"fine-tune step {step}{'/' + str(iters) if iters else ''} "
                    f"loss {parts['loss']:.4f} mean {np.mean(recent):.4f} best {best_mean:.4f}")
    except BaseException:
        if dirty:          # keep the last good (best) weights on disk, then re-raise
            write()
        raise
    if best_state is None and step > 0:   # stopped before one full window
        best_mean = float(np.mean(recent))
        best_state = encoder_state()
        dirty = True
    if dirty:
        write()
    if best_state is not None:
        ft.encoder.load_state_dict(best_state)
    ft.eval()
    for p in ft.parameters():
        p.requires_grad_(False)
    ft.weights_path = Path(out).resolve() if out is not None and best_state is not None else None
    stopped = ("cancelled" if cancelled else
               "iters" if iters is not None and step >= iters else "minutes")
    return FinetuneResult(ft, step, losses, best_mean, stopped, ft.weights_path)
