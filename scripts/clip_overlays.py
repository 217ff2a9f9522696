"""Propagate hand-drawn frame-0 polygons through a real clip and save a strip of overlays.

    python scripts/clip_overlays.py ../shared/data/clips/01_dog.mp4 --frames 90 \
        --show 0,30,60,89 --out docs/screenshots/clip_01_dog.png [--follow 0]

Polygons come from docs/screenshots/clip_masks.json (full-size pixel coordinates, one
list per object id). Shipped weights and default settings unless flags say otherwise;
prints seconds per frame.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage.draw import polygon

from corrflow_napari.io import open_video
from corrflow_napari.io.export import overlay
from corrflow_napari.model import load_model
from corrflow_napari.propagation import PropagationSettings, propagate_labels

MASKS = Path(__file__).resolve().parents[1] / "docs" / "screenshots" / "clip_masks.json"


def frame0_mask(name: str, h: int, w: int) -> np.ndarray:
    """(H, W) ids drawn from the clip's polygons in clip_masks.json."""
    mask = np.zeros((h, w), np.uint8)
    for obj, pts in json.loads(MASKS.read_text())[name].items():
        xy = np.asarray(pts, float)
        rr, cc = polygon(xy[:, 1], xy[:, 0], (h, w))
        mask[rr, cc] = int(obj)
    return mask


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--show", default="0,20,40,59")
    ap.add_argument("--out", required=True)
    ap.add_argument("--follow", type=int, default=1)
    ap.add_argument("--width", type=int, default=323, help="width of each panel (px)")
    ap.add_argument("--weights", default=None,
                    help="checkpoint or 'lab' (default: the shipped weights)")
    args = ap.parse_args()
    video = open_video(args.video)
    frames = np.stack([video[t] for t in range(min(args.frames, len(video)))])
    mask = frame0_mask(Path(args.video).name, *frames.shape[1:3])
    t0 = time.time()
    labels = propagate_labels(load_model(args.weights), frames, {0: mask},
                              settings=PropagationSettings(follow=bool(args.follow)))
    print(f"{(time.time() - t0) / (len(frames) - 1):.2f} s/frame")
    show = [int(s) for s in args.show.split(",")]
    panels = []
    for t, img in zip(show, overlay(frames[show], labels[show])):
        im = Image.fromarray(img)
        im = im.resize((args.width, round(args.width * im.height / im.width)), Image.LANCZOS)
        draw = ImageDraw.Draw(im)
        draw.rectangle([2, 2, 62, 16], fill="black")
        draw.text((6, 4), f"frame {t}", fill="white")
        panels.append(np.asarray(im))
    strip = np.concatenate([np.pad(p, ((0, 0), (0, 2), (0, 0)), constant_values=255)
                            for p in panels], 1)[:, :-2]
    Image.fromarray(strip).save(args.out)


if __name__ == "__main__":
    main()
