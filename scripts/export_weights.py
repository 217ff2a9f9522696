"""Turn a training checkpoint into shippable weights: encoder + centroids in fp16, the
chosen inference settings, no optimiser state.

    python scripts/export_weights.py runs/default/ckpt.pt \
        corrflow_napari/weights/corrflow_default.pt \
        --normalize 1 --metric negsqdist --temperature 0.05 --lab-weight 3 --frame-bn 1 \
        --lab-mix 0.5

Settings not given keep the checkpoint's values. The inference settings are chosen on
the dev set with scripts/compare_inference.py (see corrflow_napari/weights/README.md for
the measurements).
"""
from __future__ import annotations

import argparse

from corrflow_napari.errors import InputError
from corrflow_napari.model import InferenceSettings, load_model
from corrflow_napari.model.checkpoint import read_checkpoint, save_checkpoint
from corrflow_napari.model.inference_settings import METRICS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt", help="training checkpoint (.pt)")
    ap.add_argument("out", help="weights file to write (.pt)")
    ap.add_argument("--normalize", type=int, choices=[0, 1], default=None)
    ap.add_argument("--metric", choices=METRICS, default=None)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--lab-weight", type=float, default=None)
    ap.add_argument("--frame-bn", type=int, choices=[0, 1], default=None,
                    help="1: BatchNorm uses each frame's own statistics at inference")
    ap.add_argument("--lab-mix", type=float, default=None,
                    help="weight of the Lab-colour affinity in the attention mixture (0..1)")
    args = ap.parse_args()
    model = load_model(args.ckpt, device="cpu")
    settings = model.inference.to_dict()
    settings.update({k: getattr(args, k) for k in settings if getattr(args, k) is not None})
    try:
        model.inference = InferenceSettings.from_dict(settings)      # converted and checked
    except InputError as exc:
        ap.error(str(exc))
    src = read_checkpoint(args.ckpt)
    save_checkpoint(args.out, model, half=True, step=src.get("step"),
                    train_config=src.get("train_config"))
    print(f"wrote {args.out}: step {src.get('step')}, inference {model.inference.to_dict()}")


if __name__ == "__main__":
    main()
