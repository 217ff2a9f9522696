"""Compare test-time feature settings of one checkpoint on DAVIS dev sequences.

    python scripts/compare_inference.py CKPT --root ../shared/data/davis2016-dev \
        --sequences all --max-frames 40 \
        --variant lab --variant lab-t01:temperature=0.01 --variant raw:metric=dot,temperature=1 \
        --variant crw:normalize=1,metric=dot,temperature=0.05 \
        --variant mix:normalize=1,metric=negsqdist,temperature=0.05,lab_weight=1

A variant named ``lab`` or ``lab-...`` uses the Lab-colour features, any other the checkpoint.
Prints J&F per sequence and the mean for every variant (first ``--max-frames`` frames of
each sequence; the official protocol otherwise). Used to choose the shipped model's
inference settings; the choice and the full-length numbers are in the README.
"""
from __future__ import annotations

import argparse

import numpy as np

from corrflow_napari.evaluation import load_sequence_prefix, resolve_sequences
from corrflow_napari.metrics import evaluate_sequence
from corrflow_napari.model import InferenceSettings, load_model
from corrflow_napari.propagation import propagate_labels


def parse_variant(spec: str):
    name, _, rest = spec.partition(":")
    opts = {}
    for kv in filter(None, rest.split(",")):
        k, v = kv.split("=")
        opts[k] = v if k == "metric" else float(v)
    return name, opts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--root", default="../shared/data/davis2016-dev")
    ap.add_argument("--sequences", default="all")
    ap.add_argument("--max-frames", type=int, default=40)
    ap.add_argument("--variant", action="append", required=True)
    args = ap.parse_args()
    seqs = resolve_sequences(args.root, args.sequences)
    variants = [parse_variant(v) for v in args.variant]
    table = {name: {} for name, _ in variants}
    for seq in seqs:
        frames, gt = load_sequence_prefix(args.root, seq, args.max_frames)
        for name, opts in variants:
            lab = name == "lab" or name.startswith("lab-")     # e.g. lab-t01:temperature=0.01
            model = load_model("lab" if lab else args.ckpt, device="cpu")
            model.inference = InferenceSettings.from_dict({**model.inference.to_dict(), **opts})
            pred = propagate_labels(model, frames, {0: gt[0]})
            table[name][seq] = 100 * evaluate_sequence(gt, pred)["JF"]
            print(f"{seq:16s} {name:10s} {table[name][seq]:5.1f}", flush=True)
    print("\nvariant     " + " ".join(f"{s[:8]:>8s}" for s in seqs) + "     mean")
    for name, row in table.items():
        print(f"{name:10s}  " + " ".join(f"{row[s]:8.1f}" for s in seqs)
              + f"  {np.mean(list(row.values())):7.1f}")


if __name__ == "__main__":
    main()
