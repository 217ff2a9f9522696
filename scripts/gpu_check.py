"""Propagation frames/s on a device, end to end in memory (issues 14, 16).

Times ``propagate_labels`` over one 480p DAVIS sequence (frames already decoded, labels
kept in memory; the first frame's mask as the keyframe) for each model given, fp32 and
with bf16 autocast on CUDA, after one warm-up run, and prints one JSON line per run:

    python scripts/gpu_check.py runs/davis-mini --seq libby --device cuda \
        --model corrflow_napari/weights/corrflow_default.pt --model paper --model lab

``paper`` is the paper's full-width encoder with random weights (timing only); ``lab``
is the Lab-colour path; anything else is a checkpoint. ``--profile N`` also runs the
first model once more (fp32, the first of each swept setting) on N frames under ``torch.profiler``
and prints the operators that take the most time (device time on CUDA), so that a short
GPU session says where the time goes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from itertools import product
from pathlib import Path

import numpy as np
import torch

from corrflow_napari.device import pick_device
from corrflow_napari.evaluation import load_sequence_prefix
from corrflow_napari.feature_cache import FrameEncoder
from corrflow_napari.model import SHIPPED_WEIGHTS, load_model
from corrflow_napari.model.encoder import EncoderConfig
from corrflow_napari.model.features import CorrFlowModel
from corrflow_napari.propagation import PropagationSettings, propagate_labels

SKIP_FAR = {"auto": None, "on": True, "off": False}


def _model(which: str, device: torch.device):
    if which == "paper":
        torch.manual_seed(0)
        return CorrFlowModel(EncoderConfig(width=1.0)).eval().to(device)
    return load_model(which, device=device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_run(model, frames, mask, device, bf16: bool, settings) -> dict:
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()
    stamps: list[float] = []

    def on_frame(t, lab):
        stamps.append(time.perf_counter())

    _sync(device)
    t0 = time.perf_counter()
    with amp:
        propagate_labels(model, frames, {0: mask}, settings=settings, on_frame=on_frame)
    _sync(device)
    total = time.perf_counter() - t0
    gaps = np.diff(stamps)
    return {"frames": len(frames), "total_s": round(total, 3),
            "frames_per_s": round(len(frames) / total, 2),
            "steady_frames_per_s": round(1 / float(np.median(gaps)), 2) if len(gaps) else None}


def profile_run(model, frames, mask, device, settings, rows: int = 25) -> str:
    """torch.profiler table of one propagation over ``frames`` (top ``rows`` operators by
    self device time on CUDA, self CPU time otherwise)."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    _sync(device)
    with profile(activities=activities) as prof:
        propagate_labels(model, frames, {0: mask}, settings=settings)
        _sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=rows)
    if device.type == "cuda":     # kernel launches and host waits per frame: by count
        table += "\n" + prof.key_averages().table(sort_by="count", row_limit=rows)
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("davis", help="DAVIS-2016 root (JPEGImages/480p, Annotations/480p)")
    ap.add_argument("--seq", default="libby")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--radius", type=int, default=None)
    ap.add_argument("--chunk-tiles", default="",
                    help="comma-separated attention chunk sizes to compare (default: the "
                         "settings' own)")
    ap.add_argument("--skip-far", default="auto",
                    help="comma-separated skip_far values to compare: auto (the default: "
                         "on the CPU only), on, off")
    ap.add_argument("--encode-batch", default=str(FrameEncoder.batch),
                    help="comma-separated FrameEncoder.batch values to compare (frames "
                         "encoded at once on an accelerator; 1: one at a time)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also profile one run of the first model on N frames (0: no)")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    frames, gt = load_sequence_prefix(Path(args.davis), args.seq, args.frames)
    mask = gt[0]
    base = PropagationSettings() if args.radius is None else \
        PropagationSettings(radius=args.radius)
    chunks = [int(c) for c in args.chunk_tiles.split(",") if c] or [base.chunk_tiles]
    skips = [SKIP_FAR[s] for s in args.skip_far.split(",")]
    batches = [int(b) for b in args.encode_batch.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    models = args.model or [str(SHIPPED_WEIGHTS)]
    for which in models:
        model = _model(which, device)
        for bf16, chunk, skip, batch in product(
                [False, True] if device.type == "cuda" else [False], chunks, skips, batches):
            settings = replace(base, chunk_tiles=chunk, skip_far=skip)
            FrameEncoder.batch = batch
            time_run(model, frames[:batch + 2], mask, device, bf16, settings)   # warm-up
            r = time_run(model, frames, mask, device, bf16, settings)
            print(json.dumps({"model": which, "device": name, "bf16": bf16,
                              "seq": args.seq, "size": list(frames.shape[1:3]),
                              "radius": settings.radius, "chunk_tiles": chunk,
                              "skip_far": skip, "encode_batch": batch, **r}),
                  flush=True)
        if args.profile and which == models[0]:
            settings = replace(base, chunk_tiles=chunks[0], skip_far=skips[0])
            FrameEncoder.batch = batches[0]
            print(profile_run(model, frames[:args.profile], mask, device, settings),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
