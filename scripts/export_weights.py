"""Turn a training checkpoint into shippable weights: encoder + centroids in fp16, the
chosen inference settings, no optimiser state.

    python scripts/export_weights.py runs/default/ckpt.pt \
        corrflow_napari/weights/corrflow_default.pt \
        --normalize 1 --metric negsqdist --temperature 0.05 --lab-weight 3 --frame-bn 1 \
        --lab-mix 0.5

The inference settings are chosen on the dev set with scripts/compare_inference.py (see
corrflow_napari/weights/README.md for the measurements).
"""
from __future__ import annotations

import argparse

from corrflow_napari.model import load_model
from corrflow_napari.model.checkpoint import read_checkpoint, save_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt", help="training checkpoint (.pt)")
    ap.add_argument("out", help="weights file to write (.pt)")
    ap.add_argument("--normalize", type=int, choices=[0, 1], default=None)
    ap.add_argument("--metric", choices=["dot", "negsqdist"], default=None)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--lab-weight", type=float, default=None)
    ap.add_argument("--frame-bn", type=int, choices=[0, 1], default=None,
                    help="1: BatchNorm uses each frame's own statistics at inference")
    ap.add_argument("--lab-mix", type=float, default=None,
                    help="weight of the Lab-colour affinity in the attention mixture (0..1)")
    args = ap.parse_args()
    if args.lab_mix is not None and not 0 <= args.lab_mix <= 1:
        ap.error("--lab-mix must be in 0..1")
    model = load_model(args.ckpt, device="cpu")
    if args.normalize is not None:
        model.normalize = bool(args.normalize)
    if args.metric is not None:
        model.metric = args.metric
    if args.temperature is not None:
        model.temperature = args.temperature
    if args.lab_weight is not None:
        model.lab_weight = args.lab_weight
    if args.frame_bn is not None:
        model.frame_bn = bool(args.frame_bn)
    if args.lab_mix is not None:
        model.lab_mix = args.lab_mix
    src = read_checkpoint(args.ckpt)
    save_checkpoint(args.out, model, half=True, step=src.get("step"),
                    train_config=src.get("train_config"))
    print(f"wrote {args.out}: step {src.get('step')}, inference {model.inference_settings()}")


if __name__ == "__main__":
    main()
