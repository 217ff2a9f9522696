"""Decode training videos once into small JPEG frame folders for fast random access.

    python scripts/prepare_training_clips.py OUT_DIR VIDEO... [--short-side 192]

The CPU training recipe crops 128 px from frames rescaled to a short side of 128-160 px,
so frames stored at a 192 px short side lose nothing, and reading a small JPEG is far
cheaper than seeking in an mp4 for every sampled clip.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v2 as iio
import numpy as np
import torch
import torch.nn.functional as F

from corrflow_napari.io import open_video


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--short-side", type=int, default=192)
    args = ap.parse_args()
    for path in args.videos:
        video = open_video(path)
        h, w = video.shape[1:3]
        s = args.short_side / min(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        folder = Path(args.out) / video.name
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(len(video)):
            x = torch.from_numpy(np.ascontiguousarray(video[t])).permute(2, 0, 1)[None].float()
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            iio.imwrite(folder / f"{t:05d}.jpg",
                        x[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy(), quality=95)
        print(f"{path}: {len(video)} frames -> {folder} ({size[1]}x{size[0]})")


if __name__ == "__main__":
    main()
