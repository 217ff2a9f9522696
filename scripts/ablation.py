"""Small-scale ablation of the training objective: each component off, same budget.

    OMP_NUM_THREADS=1 python scripts/ablation.py runs/data/* --out runs/ablation \
        --iters 400 --sequences blackswan,bmx-trees,car-roundabout,kite-surf --max-frames 30

Trains one model per variant from the same seed and the same clips (``TrainConfig.cpu()``
with ``--iters`` steps), then scores each on the first ``--max-frames`` frames of the dev
sequences with the learned embedding alone (no Lab colour appended; L2-normalised,
softmax of negative squared distance / 0.05, each frame's own BatchNorm statistics), so
that the table measures what the objective taught the encoder. Prints J&F per sequence
and the mean; ``results.json`` also records the mean training loss of the last 50 steps
(not comparable across variants whose loss differs, e.g. without the cycle terms).
Checkpoints and ``results.json`` go to ``--out``; finished variants are reused when the
script is run again.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from corrflow_napari.evaluation import load_sequence_prefix, resolve_sequences
from corrflow_napari.metrics import evaluate_sequence
from corrflow_napari.model import load_model
from corrflow_napari.propagation import propagate_labels
from corrflow_napari.training import TrainConfig, train

VARIANTS = {                      # name -> TrainConfig changes
    "full objective": {},
    "no colour dropout": {"colour_dropout": False},
    "full attention": {"restricted": False},
    "no scheduled sampling": {"scheduled_sampling": False},
    "no cycle": {"cycle": False},
}
EMBEDDING_ONLY = {"normalize": True, "metric": "negsqdist", "temperature": 0.05,
                  "lab_weight": 0.0, "frame_bn": True}


def score(ckpt: Path, root: str, seqs: list[str], max_frames: int) -> dict[str, float]:
    model = load_model(ckpt, device="cpu")
    model.inference = dataclasses.replace(model.inference, **EMBEDDING_ONLY)
    out = {}
    for seq in seqs:
        frames, gt = load_sequence_prefix(root, seq, max_frames)
        out[seq] = 100 * evaluate_sequence(gt, propagate_labels(model, frames, {0: gt[0]}))["JF"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="+", help="training videos / frame folders")
    ap.add_argument("--out", required=True, help="folder for checkpoints and results.json")
    ap.add_argument("--iters", type=int, default=400, help="training steps per variant")
    ap.add_argument("--root", default="../shared/data/davis2016-dev")
    ap.add_argument("--sequences", default="blackswan,bmx-trees,car-roundabout,kite-surf")
    ap.add_argument("--max-frames", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma list of variants to run (default: all)")
    args = ap.parse_args()
    chosen = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seqs = resolve_sequences(args.root, args.sequences)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in chosen:
        changes = VARIANTS[name]
        if name in results:
            continue
        ckpt = out / (name.replace(" ", "_") + ".pt")
        losses: list[float] = []
        config = TrainConfig.cpu(iters=args.iters, seed=args.seed, save_every=0, **changes)
        if not ckpt.exists():
            train(args.videos, ckpt, config, device="cpu",
                  progress=lambda step, total, loss, losses=losses: losses.append(loss),
                  log=lambda msg: None)
        jf = score(ckpt, args.root, seqs, args.max_frames)
        tail = losses[-50:]
        results[name] = {"jf": jf, "mean": float(np.mean(list(jf.values()))),
                         "final_loss": float(np.mean(tail)) if tail else None,
                         "iters": args.iters, "changes": changes}
        print(f"{name:22s} mean J&F {results[name]['mean']:5.1f}  "
              + " ".join(f"{s} {v:5.1f}" for s, v in jf.items()), flush=True)
        tmp = out / ".results.json.tmp"
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, results_path)
    print(f"\n| variant ({args.iters} steps) | " + " | ".join(seqs) + " | mean |")
    print("|---" * (len(seqs) + 2) + "|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r['jf'][s]:.1f}" for s in seqs)
              + f" | {r['mean']:.1f} |")


if __name__ == "__main__":
    main()
