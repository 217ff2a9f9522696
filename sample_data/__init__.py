"""The bundled sample: 48 frames of Big Buck Bunny ((c) Blender Foundation, CC BY 3.0;
see ATTRIBUTION.txt) at 320x180, with a first-frame mask of the bunny (object 1)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SAMPLE_VIDEO = HERE / "bigbuckbunny.mp4"
SAMPLE_MASK = HERE / "bigbuckbunny_mask_00000.png"
ATTRIBUTION = ("Big Buck Bunny (c) Blender Foundation, www.bigbuckbunny.org, CC BY 3.0 "
               "(https://creativecommons.org/licenses/by/3.0/); excerpt, downscaled")


def load_sample() -> tuple[np.ndarray, np.ndarray]:
    """``(frames (48, 180, 320, 3) uint8, first-frame mask (180, 320) int)``."""
    from ..io import open_video, read_mask
    video = open_video(SAMPLE_VIDEO)
    frames = np.asarray(video)
    video.close()
    mask, _palette = read_mask(SAMPLE_MASK, shape=frames.shape[1:3])
    return frames, mask


def sample_fps() -> float:
    return 12.5


def make_sample_data():
    """npe2 sample contribution: the clip as an RGB Image layer and a Labels layer with
    frame 0 painted."""
    frames, mask = load_sample()
    labels = np.zeros(frames.shape[:3], dtype=np.uint8)
    labels[0] = mask
    meta = {"attribution": ATTRIBUTION, "fps": sample_fps()}
    return [(frames, {"name": "Big Buck Bunny", "rgb": True, "metadata": meta}, "image"),
            (labels, {"name": "bunny labels"}, "labels")]
