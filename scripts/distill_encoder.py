"""Distil an encoder (the teacher: ``checkpoints/latest.pt`` by default) into a cheaper one
(``corrflow_napari.training.distill``); the shipped default weights are such a student.

    python scripts/distill_encoder.py runs/distill/student.pt --inner 1,1,0.5,0.5 --steps 3000
    python scripts/distill_encoder.py runs/distill/narrower.pt --init runs/distill/student.pt \
        --inner 0.5,0.5,0.375,0.375 --steps 2000
    python scripts/distill_encoder.py runs/distill/head1.pt --init runs/distill/narrower.pt \
        --inner 0.25,0.25,0.25,0.25 --post-kernel 1 --steps 2000

Frames: every ``--every``-th frame of each video, brought to a short side of
``--short-side`` pixels (the default working size), kept in memory. The default videos
are the DAVIS-2016 train sequences and the clips in ``../shared/data`` (never the dev
sequences, which judge the result). Writes the student as a checkpoint with the teacher's
colour centroids and inference settings, its per-step loss as ``OUT.csv``, and with
``--save-init`` the pruned, untrained student.
"""
from __future__ import annotations

import argparse
import csv
import glob
import sys
from pathlib import Path

import numpy as np
import torch

from corrflow_napari.device import pick_device
from corrflow_napari.errors import InputError
from corrflow_napari.feature_cache import resize_rgb8
from corrflow_napari.io import open_video
from corrflow_napari.model import load_model
from corrflow_napari.model.checkpoint import save_checkpoint
from corrflow_napari.model.features import CorrFlowModel
from corrflow_napari.training.distill import DistillConfig, FramePool, distill, pruned_student

TEACHER = Path(__file__).resolve().parents[1] / "checkpoints" / "latest.pt"
DEFAULT_VIDEOS = ["../shared/data/davis2016-train/JPEGImages/480p/*",
                  "../shared/data/clips/*.mp4"]


def load_pool(patterns: list[str], short_side: int, every: int, per_video: int) -> FramePool:
    frames = []
    for path in sorted(p for pat in patterns for p in glob.glob(pat)):
        video = open_video(path)
        h, w = video.shape[1:3]
        s = min(1.0, short_side / min(h, w))
        size = (round(h * s), round(w * s))
        for t in list(range(0, len(video), every))[:per_video]:
            f = torch.from_numpy(np.ascontiguousarray(video[t]))[None]
            frames.append(resize_rgb8(f, size)[0] if s < 1 else f[0])
        print(f"{Path(path).name}: {len(video)} frames {w}x{h} -> {size[1]}x{size[0]}",
              flush=True)
    return FramePool(frames)


def student_model(encoder, teacher: CorrFlowModel) -> CorrFlowModel:
    model = CorrFlowModel(encoder.config, centroids=teacher.centroids.clone(),
                          inference=teacher.inference)
    model.encoder.load_state_dict(encoder.state_dict())
    return model.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--teacher", default=str(TEACHER),
                    help="teacher weights (default: checkpoints/latest.pt, the full-width "
                         "blocks the shipped student was distilled from)")
    ap.add_argument("--init", default=None,
                    help="weights to prune the student from (default: the teacher); their "
                         "blocks must be at least as wide as --inner")
    ap.add_argument("--inner", default="1,1,0.5,0.5")
    ap.add_argument("--post-kernel", type=int, default=None, choices=(1, 3),
                    help="the output convolution's size (default: as --init's)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", default="256,384", help="h,w")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--videos", nargs="+", default=DEFAULT_VIDEOS)
    ap.add_argument("--short-side", type=int, default=480)
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--per-video", type=int, default=150)
    ap.add_argument("--save-init", action="store_true")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default), cuda, mps or auto: where the two networks run")
    a = ap.parse_args(argv)

    try:
        device = pick_device(a.device)
    except InputError as exc:
        sys.exit(f"distill_encoder: {exc}")
    try:
        teacher = load_model(a.teacher, device="cpu")
        pool = load_pool(a.videos, a.short_side, a.every, a.per_video)
    except (InputError, ValueError) as exc:
        sys.exit(f"distill_encoder: {exc} (videos: {' '.join(a.videos)}; run from the "
                 "repository root or pass --videos)")
    if not isinstance(teacher, CorrFlowModel):
        sys.exit("distill_encoder: the teacher must be learned weights, not lab.")
    print(f"pool: {len(pool.frames)} frames", flush=True)
    rng = np.random.default_rng(1234)
    crop = tuple(int(v) for v in a.crop.split(","))
    inner = tuple(float(v) for v in a.inner.split(","))
    start = teacher if a.init is None else load_model(a.init, device="cpu")
    try:
        student = pruned_student(start.encoder, inner, pool.crops(16, crop, rng, zoom=(1, 1)),
                                 post_kernel=a.post_kernel)
    except ValueError as exc:
        sys.exit(f"distill_encoder: {exc}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    extra = {"distilled_from": str(teacher.weights_path), "inner": list(inner),
             "pruned_from": str(start.weights_path)}
    if a.save_init:
        save_checkpoint(a.out.with_name(a.out.stem + "-init.pt"),
                        student_model(student, teacher), step=0, **extra)

    rows = []

    def log(step, loss, seconds):
        rows.append((step, loss, seconds))
        if step % 50 == 0:
            recent = np.mean([r[1] for r in rows[-50:]])
            print(f"step {step} loss {recent:.4f} ({seconds / (step + 1):.2f} s/step)",
                  flush=True)

    config = DistillConfig(steps=a.steps, batch=a.batch, crop=crop, lr=a.lr)
    print(f"distilling on {device}", flush=True)
    result = distill(teacher.encoder, student, pool, config, log=log, device=device)
    save_checkpoint(a.out, student_model(result.student, teacher), step=len(result.losses),
                    distill_config={k: getattr(config, k) for k in config.__dataclass_fields__},
                    **extra)
    with open(a.out.with_suffix(".csv"), "w", newline="") as fh:
        csv.writer(fh).writerows([("step", "loss", "seconds")] + rows)
    print(f"saved {a.out}: {len(result.losses)} steps in {result.seconds / 60:.1f} min, "
          f"loss {np.mean(result.losses[:50]):.4f} -> {np.mean(result.losses[-50:]):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
