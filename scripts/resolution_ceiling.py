"""The best J&F a label map at feature resolution can reach: each ground-truth mask is
taken down to the propagation's feature grid (1/4 of the frame, area-averaged, as a
keyframe is) and back up (bilinear, then the argmax), exactly as propagated labels are,
and scored with the official protocol against itself.

    python scripts/resolution_ceiling.py ../shared/data/davis2016-dev [--label-stride 2]

Prints J&F per sequence and the mean: no propagation can score above these with labels
carried at 1/4 resolution, whatever the features. ``--label-stride 2`` / ``1``: the same
for labels that also carry their sub-cells (``PropagationSettings.label_stride``).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from corrflow_napari.evaluation import resolve_sequences
from corrflow_napari.evaluation.davis_data import load_annotations
from corrflow_napari.full_size_labels import upsample as _upsample
from corrflow_napari.metrics import evaluate_sequence
from corrflow_napari.propagation import feature_hw
from corrflow_napari.sub_cell_labels import STRIDES, fine_probs, seed_values


def round_trip(masks: np.ndarray, stride: int = 4) -> np.ndarray:
    """(T, H, W) integer masks -> the same masks after the round trip through labels
    carried at ``stride`` pixels (4: the feature grid)."""
    ids = np.unique(masks)
    t_n, h, w = masks.shape
    out = np.empty_like(masks)
    for t in range(t_n):
        onehot = F.one_hot(torch.from_numpy(np.searchsorted(ids, masks[t])), len(ids))
        low = seed_values(onehot.permute(2, 0, 1), feature_hw(h, w, 1.0), stride)
        up = _upsample(fine_probs(low, stride), (h, w), 1.0, cell=stride)
        out[t] = ids[up.argmax(0).numpy()]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="DAVIS layout folder (JPEGImages/480p, Annotations/480p)")
    p.add_argument("--sequences", default="all")
    p.add_argument("--label-stride", type=int, default=4, choices=STRIDES)
    a = p.parse_args(argv)
    scores = []
    for seq in resolve_sequences(a.root, a.sequences):
        gt, _ = load_annotations(a.root, seq)
        r = evaluate_sequence(gt, round_trip(gt, a.label_stride))
        scores.append(r["JF"])
        print(f"{seq:20s} J {100 * r['J']:5.1f}  F {100 * r['F']:5.1f}  J&F {100 * r['JF']:5.1f}")
    print(f"{'mean':20s} J&F {100 * np.mean(scores):5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
