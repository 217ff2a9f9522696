"""Fine-tuning speed on the bundled sample (48 frames, 320x180) with the shipped weights and
the default recipe: seconds per step with the painted first frame (label-aware) and with
colours only, the time of the held-out check, and how many steps fit in a budget.

    python benchmarks/bench_finetune.py [--steps 12] [--minutes 3]

Prints one line per mode and a JSON summary; run it with other jobs stopped (the load
average is printed) and compare modes within one run on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from corrflow_napari.model import load_model
from corrflow_napari.sample_data import load_sample
from corrflow_napari.training import finetune


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help="steps timed per mode")
    ap.add_argument("--minutes", type=float, default=3.0, help="budget to convert to steps")
    ap.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights)")
    args = ap.parse_args()
    frames, mask = load_sample()
    model = load_model(args.weights, device="cpu")
    summary = {"threads": torch.get_num_threads(), "load_before": os.getloadavg()[0]}
    for mode, keyframes in (("labels", {0: mask}), ("colours", None)):
        t0 = time.perf_counter()
        res = finetune(model, frames, iters=args.steps, keyframes=keyframes)
        total = time.perf_counter() - t0
        other = total - res.seconds_per_step * res.steps      # setup + check before/after
        fit = int((args.minutes * 60 - other) / res.seconds_per_step)
        summary[mode] = {"s_per_step": round(res.seconds_per_step, 3),
                         "check_and_setup_s": round(other, 1),
                         f"steps_in_{args.minutes:g}_min": fit}
        print(f"{mode}: {res.seconds_per_step:.3f} s/step over {res.steps} steps, check + "
              f"setup {other:.1f} s -> {fit} steps in {args.minutes:g} min", flush=True)
    summary["load_after"] = os.getloadavg()[0]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
