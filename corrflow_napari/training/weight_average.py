"""Averaging the weights of runs that started from one checkpoint (a "model soup",
Wortsman et al. 2022; stochastic weight averaging in spirit).

Two CPU continuations of the same weights with different seeds end near each other in
weight space; their average often scores at least as well as either, for the price of
one evaluation instead of another training run. Only the encoder's floating-point
tensors are averaged (uniform weights); everything else (config, centroids, inference
settings) must agree and is taken from the first file.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from ..errors import InputError
from ..model.checkpoint import atomic_torch_save, read_checkpoint, stored_tensor


def mean_state(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean (in fp32) of the floating-point tensors of state dicts with
    the same keys; other tensors (integer counters) are taken from the first."""
    first = states[0]
    return {name: torch.stack([s[name].float() for s in states]).mean(0)
            if value.is_floating_point() else value for name, value in first.items()}


def average_checkpoints(paths: Sequence[str | os.PathLike], *, half: bool = True) -> dict:
    """The checkpoint dict whose encoder tensors are the mean of those of ``paths``
    (at least two files with the same encoder config, centroids and inference settings).
    half: store the averaged weights in fp16 (as exported weights are); the mean itself
    is taken in fp32. No optimiser state: the result is a weights file, not a run."""
    if len(paths) < 2:
        raise InputError("give at least two weights files to average.")
    objs = [read_checkpoint(p) for p in paths]
    first = objs[0]
    for p, o in zip(paths[1:], objs[1:]):
        for key in ("encoder_config", "inference"):
            if o.get(key) != first.get(key):
                raise InputError(f"{p}: its {key.replace('_', ' ')} differs from {paths[0]}'s; "
                                 "only runs of one model with one setting can be averaged.")
        if not torch.equal(o["centroids"].float(), first["centroids"].float()):
            raise InputError(f"{p}: its colour centroids differ from {paths[0]}'s; only runs "
                             "from one starting checkpoint can be averaged.")
        if set(o["encoder"]) != set(first["encoder"]):
            raise InputError(f"{p}: its encoder tensors differ from {paths[0]}'s.")
    mean = mean_state([o["encoder"] for o in objs])
    encoder = {name: stored_tensor(name, value, half) for name, value in mean.items()}
    steps = [o.get("step") for o in objs]
    return {k: v for k, v in first.items()
            if k not in ("optimizer", "scaler", "step", "encoder")} | {
        "encoder": encoder, "averaged_from": [str(p) for p in paths], "steps": steps}


def write_average(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> dict:
    """:func:`average_checkpoints` written atomically to ``out``; returns the dict."""
    obj = average_checkpoints(paths)
    atomic_torch_save(obj, out)
    return obj
