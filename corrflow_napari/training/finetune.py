"""Fine-tuning a copy of trained weights on the user's own clip: :func:`finetune` returns
a :class:`FinetuneResult`.

The objective is the paper's colour reconstruction on the clip plus, when the user has
painted keyframes, the label term (:mod:`.label_objective`). A held-out check
(:mod:`.finetune_check`) and a guard are measured before and after; when
the check does not improve or the guard gets worse, the starting weights are kept and the
result says so (``kept_start``).
"""
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
from ..io.frame_subset import FrameSubset
from ..model.checkpoint import save_checkpoint
from ..model.features import CorrFlowModel
from .config import TrainConfig, p_at
from .data import ClipSampler, fit_centroids, interval_for, step_rngs
from .finetune_check import (
    ColourForward,
    ColourRoundTrip,
    MaskRoundTrip,
    PropagationCrispness,
)
from .label_objective import KeyframeSet, LabelTerm, label_loss
from .loop import _noop, check_out_path
from .objective import make_optimizer, train_step, trained_parameters
from .pseudo_keyframes import pseudo_keyframes

HELD_OUT_FRACTION = 0.1    # without labels: the end of the video left out for the check


@dataclass
class FinetuneResult:
    """What a fine-tuning run ended with.

    model: the weights to use (eval mode; ``model.weights_path`` is the saved file or
        None): the fine-tuned copy, or a copy of the starting weights when ``kept_start``.
    steps: optimisation steps run. losses: the loss of every step. best_loss: the lowest
        running-mean loss (inf when no step ran).
    stopped: why it ended: "iters" (all steps done), "minutes" (wall-time limit) or
        "cancelled". path: the checkpoint written (resolved), or None.
    check: what the held-out check measures ("" when there was none); check_before /
        check_after: its score (0..1, higher is better) for the starting and the
        fine-tuned weights. guard / guard_before / guard_after: the same for the guard,
        which must not get worse (:class:`~.finetune_check.PropagationCrispness` with
        keyframes, else :class:`~.finetune_check.ColourForward`).
        kept_start: True when the check did not improve or the guard got worse, so the
        starting weights were kept (and saved to ``path``).
    labelled: the painted keyframes the label term used (sorted frame indices; [] = colour
        only). pseudo: the frames it also trained on as if painted, their labels
        propagated by the starting weights (:mod:`.pseudo_keyframes`).
    seconds_per_step: the measured mean time of one step (None when no step ran).
    """

    model: CorrFlowModel
    steps: int
    losses: list = field(default_factory=list)
    best_loss: float = math.inf
    stopped: str = "iters"
    path: Path | None = None
    check: str = ""
    check_before: float | None = None
    check_after: float | None = None
    kept_start: bool = False
    labelled: list = field(default_factory=list)
    pseudo: list = field(default_factory=list)
    guard: str = ""
    guard_before: float | None = None
    guard_after: float | None = None
    seconds_per_step: float | None = None

    def learned(self) -> str:
        """What the run learned from, for the user."""
        if not self.labelled:
            return "colours only"
        frames = ", ".join(map(str, self.labelled))
        extra = (f" and {len(self.pseudo)} frames propagated from them "
                 f"({', '.join(map(str, self.pseudo))})" if self.pseudo else "")
        return f"the painted masks of frame(s) {frames}{extra}"

    def summary(self) -> str:
        """One line for the user: what was kept and why."""
        if self.check_before is None:
            return "no held-out check (the video is too short); kept the fine-tuned weights"
        scores = f"{self.check_before:.3f} -> {self.check_after:.3f}"
        guard = ("" if self.guard_before is None or self.guard_after is None else
                 f"{self.guard_before:.3f} -> {self.guard_after:.3f}")
        if self.kept_start and not self.check_after > self.check_before:
            return (f"the held-out check did not improve ({scores}): kept the starting "
                    "weights")
        if self.kept_start:
            return (f"the held-out check improved ({scores}) but the guard got worse "
                    f"({guard}, {self.guard}): kept the starting weights")
        return (f"the held-out check improved ({scores})"
                + (f" and the guard did not get worse ({guard}, {self.guard})" if guard
                   else "") + ": kept the fine-tuned weights")


def _plan(frames, keyframes, config: TrainConfig):
    """(colour clip sampler, held-out check or None, guard or None).

    The guard: with keyframes the crispness of their propagation through the video
    (:class:`PropagationCrispness`, also the source of the pseudo-keyframes); without,
    colours predicted forward inside the held-out end of the video
    (:class:`ColourForward`)."""
    n = len(frames)
    step = min(interval_for(getattr(frames, "fps", None), config), max(1, (n - 1) // 2))
    if keyframes:
        check = MaskRoundTrip(frames, keyframes, step)
        guard = PropagationCrispness(frames, keyframes)
        return ClipSampler([frames], config), check or None, guard or None
    hold = max(3, math.ceil(HELD_OUT_FRACTION * n))
    if n - hold >= 3:
        check = ColourRoundTrip(frames, list(range(n - hold, n)), step)
        guard = ColourForward(frames, step, span=(n - hold, n - 1))
        return (ClipSampler([FrameSubset(frames, range(n - hold))], config),
                check or None, guard or None)
    return ClipSampler([frames], config), None, None


def choose_pseudo_keyframes(model: CorrFlowModel, frames, keyframes: dict,
                            guard: PropagationCrispness, check_frames: set, count: int):
    """(the guard's propagation by ``model``, {t: (H, W) ids} of up to ``count``
    pseudo-keyframes from it, never keyframes or ``check_frames``); the guard leaves the
    chosen frames out of its score from then on."""
    seen = guard.propagate(model)
    pseudo = pseudo_keyframes(seen, count, len(frames), set(keyframes) | set(check_frames))
    guard.excluded = set(pseudo)
    return seen, pseudo


def finetune(model: CorrFlowModel, frames, iters: int | None = None,
             minutes: float | None = None,
             progress: Callable[[int, int | None, float], None] | None = None,
             cancel: threading.Event | None = None, out=None,
             config: TrainConfig | None = None,
             log: Callable[[str], None] | None = None,
             keyframes: dict | None = None, label_term: LabelTerm | None = None,
             check: bool = True) -> FinetuneResult:
    """Fine-tune a COPY of ``model`` on one video.

    frames: a Video or a (T, H, W, 3) uint8 array (the user's clip).
    keyframes: {t: (H, W) object ids} the user painted; they add the label term
        (``label_term``: its settings). Without them: colour reconstruction only.
    Stops after ``iters`` steps, after ``minutes`` of wall time (the held-out check
    included), or when ``cancel`` is set (whichever comes first; neither given:
    ``config.iters``). The fine-tuned copy holds the weights of lowest running-mean loss
    (window ``config.mean_window``). With ``check`` the held-out check and the forward
    colour guard are measured before and after (:mod:`.finetune_check`): when the check
    does not improve or the guard gets worse, the result is a copy of the starting
    weights (``kept_start``). The result's model is in eval mode
    on ``model``'s device; the original model (and its file) is never modified.
    With ``out`` the best weights are saved there atomically after an improvement (at
    most every 10 s) and the kept weights at the end, so a crash leaves the last good
    checkpoint; ``out`` may not be the shipped weights or the file ``model`` was loaded
    from (``model.weights_path``).
    progress(step, total, loss): total is None when only ``minutes`` bounds the run.
    Defaults: :meth:`TrainConfig.finetune`, :class:`LabelTerm` (measurements behind
    them: docs/measurements-training.md).
    """
    if not isinstance(model, CorrFlowModel):
        raise InputError("only CorrFlow weights can be fine-tuned (not the Lab baseline).")
    log = log or _noop
    config = config or TrainConfig.finetune()
    term = label_term or LabelTerm()
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
    t_start = time.perf_counter()
    dev = model.device
    ft = copy.deepcopy(model).to(dev)
    ft.weights_path = None
    trained = {id(p) for p in trained_parameters(ft, config)}
    for p in ft.parameters():       # frozen weights need no gradient (a faster backward)
        p.requires_grad_(id(p) in trained)
    sampler, held_out, guard = _plan(frames, keyframes, config)
    kset, pseudo, seen = None, {}, None
    if keyframes:
        check_frames = held_out.frames_used if held_out is not None else set()
        if term.pseudo_keyframes and guard is not None:
            ft.eval()
            seen, pseudo = choose_pseudo_keyframes(ft, frames, keyframes, guard, check_frames,
                                                   term.pseudo_keyframes)
            log(f"pseudo-keyframes (propagated, confident): {sorted(pseudo) or 'none'}")
        kset = KeyframeSet(frames, {**keyframes, **pseudo}, term, held_out=check_frames)
    held_out = held_out if check else None
    guard = guard if held_out is not None else None
    n_colour = config.batch if kset is None or term.colour_batch is None else term.colour_batch
    if not bool(ft.centroids.abs().sum() > 0):
        ft.centroids.copy_(fit_centroids(sampler, config, ft.centroids.shape[0]).to(dev))
    start_state = _encoder_state(ft)
    before = g_before = None
    if held_out is not None:
        ft.eval()
        before = held_out.score(ft)
        log(f"held-out check before fine-tuning: {before:.4f} ({held_out.name})")
        if guard is not None:
            g_before = guard.score(ft) if seen is None else guard.crispness(seen)
            log(f"guard before fine-tuning: {g_before:.4f} ({guard.name})")
    t_check = time.perf_counter() - t_start     # the check after costs about as much
    optimizer = make_optimizer(ft, config)
    losses: list[float] = []
    recent: deque = deque(maxlen=max(1, config.mean_window))
    best_state, best_mean, dirty, last_save = None, math.inf, False, -math.inf
    t_loop = time.perf_counter()
    deadline = t_start + minutes * 60 - t_check if minutes is not None else math.inf
    step, cancelled = 0, False

    def write(state: dict, **meta):
        nonlocal dirty, last_save
        if out is not None and state is not None:
            keep = _encoder_state(ft)
            ft.encoder.load_state_dict(state)
            save_checkpoint(out, ft, step=step, train_config=config.to_dict(),
                            finetuned_from=str(source) if source else None, **meta)
            ft.encoder.load_state_dict(keep)
            dirty, last_save = False, time.perf_counter()

    def labels():
        return label_loss(ft, kset, np_rng, gen)

    try:
        while (iters is None or step < iters) and time.perf_counter() < deadline:
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            np_rng, gen = step_rngs(config.seed, 0, step)
            if iters is not None:
                frac = step / max(1, iters - 1)
            else:
                frac = (time.perf_counter() - t_loop) / max(deadline - t_loop, 1e-9)
            clip = sampler.sample(n_colour, np_rng).to(dev) if n_colour else None
            parts = train_step(ft, optimizer, clip, config, step, gen,
                               p_gt=p_at(step, config, frac), lr=config.lr,
                               extra_loss=labels if kset is not None else None)
            step += 1
            losses.append(parts["loss"])
            recent.append(parts["loss"])
            if len(recent) == recent.maxlen or (iters is not None and step == iters
                                                and best_state is None):
                m = float(np.mean(recent))
                if m < best_mean:
                    best_mean, dirty = m, True
                    best_state = _encoder_state(ft)
                    if time.perf_counter() - last_save >= 10:
                        write(best_state, loss_mean=best_mean)
            if progress is not None:
                progress(step, iters, parts["loss"])
            if step % max(1, config.log_every) == 0:
                log(f"fine-tune step {step}{'/' + str(iters) if iters else ''} "
                    f"loss {parts['loss']:.4f} mean {np.mean(recent):.4f} best {best_mean:.4f}")
    except BaseException:
        if dirty:          # keep the last good (best) weights on disk, then re-raise
            write(best_state, loss_mean=best_mean)
        raise
    per_step = (time.perf_counter() - t_loop) / step if step else None
    if best_state is None and step > 0:   # stopped before one full window
        best_mean = float(np.mean(recent))
        best_state = _encoder_state(ft)
    after, g_after, kept_start = None, None, False
    if best_state is not None:
        ft.encoder.load_state_dict(best_state)
        if held_out is not None:
            ft.eval()
            after = held_out.score(ft)
            log(f"held-out check after fine-tuning: {after:.4f}")
            kept_start = not after > before
            if guard is not None and not kept_start:
                g_after = guard.score(ft)
                log(f"guard after fine-tuning: {g_after:.4f}")
                kept_start = g_after < g_before
    if kept_start:
        ft.encoder.load_state_dict(start_state)
    if best_state is not None:
        write(start_state if kept_start else best_state, loss_mean=best_mean,
              finetune_check={"check": held_out.name if held_out else "",
                              "before": before, "after": after, "kept_start": kept_start,
                              "guard": guard.name if guard else "",
                              "guard_before": g_before, "guard_after": g_after})
    ft.eval()
    for p in ft.parameters():
        p.requires_grad_(False)
    ft.weights_path = Path(out).resolve() if out is not None and best_state is not None else None
    stopped = ("cancelled" if cancelled else
               "iters" if iters is not None and step >= iters else "minutes")
    return FinetuneResult(ft, step, losses, best_mean, stopped, ft.weights_path,
                          check=held_out.name if held_out else "", check_before=before,
                          check_after=after, kept_start=kept_start,
                          labelled=sorted(keyframes) if kset is not None else [],
                          pseudo=sorted(pseudo),
                          seconds_per_step=per_step, guard=guard.name if guard else "",
                          guard_before=g_before, guard_after=g_after)


def _encoder_state(model: CorrFlowModel) -> dict:
    return {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}
