"""Regenerate the sample clip and its first-frame mask (run once by a maintainer).

Source: Big Buck Bunny (c) Blender Foundation, CC-BY 3.0 (see ATTRIBUTION.txt); a
1280x720 25 fps excerpt. We keep source frames 36, 38, ..., 130 (48 frames, 12.5 fps),
downscale them to 320x180 and paint the bunny on the first kept frame with a polygon
traced by hand over the frame (coordinates below are on a 3x enlarged 960x540 view).

    python corrflow_napari/sample_data/make_sample.py SOURCE.mp4
"""
from __future__ import annotations

import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image
from skimage.draw import polygon
from skimage.transform import resize

HERE = Path(__file__).resolve().parent
SIZE = (180, 320)                     # H, W
FIRST, STOP, STEP = 36, 132, 2
# bunny outline (x, y) on the 3x view, clockwise from the tip of its left hand
BUNNY_3X = [(122, 205), (150, 195), (185, 210), (215, 205), (245, 180), (290, 166),
            (330, 163), (370, 168), (378, 120), (385, 85), (400, 95), (410, 140), (412, 175),
            (430, 150), (460, 125), (480, 122), (470, 140), (440, 175), (425, 195),
            (452, 214), (490, 234), (512, 262), (515, 290), (510, 320), (500, 345),
            (480, 340), (465, 320), (460, 290), (450, 300), (445, 360), (430, 400),
            (405, 430), (390, 445), (360, 445), (345, 430), (300, 420), (250, 410),
            (215, 390), (195, 350), (190, 300), (192, 260), (185, 255), (160, 262),
            (150, 250), (135, 235), (122, 220)]


def bunny_mask() -> np.ndarray:
    xy = np.asarray(BUNNY_3X, float) / 3.0
    mask = np.zeros(SIZE, np.uint8)
    rr, cc = polygon(xy[:, 1], xy[:, 0], SIZE)
    mask[rr, cc] = 1
    return mask


def main(source: str) -> None:
    reader = imageio.get_reader(source)
    frames = [f for i, f in enumerate(reader) if FIRST <= i < STOP and (i - FIRST) % STEP == 0]
    small = [resize(f, SIZE, anti_aliasing=True, preserve_range=True).round().astype(np.uint8)
             for f in frames]
    fps = reader.get_meta_data()["fps"] / STEP
    with imageio.get_writer(HERE / "bigbuckbunny.mp4", fps=fps, codec="libx264", quality=8,
                            macro_block_size=2, pixelformat="yuv420p") as w:
        for f in small:
            w.append_data(f)
    img = Image.fromarray(bunny_mask(), mode="P")
    pal = np.zeros((256, 3), np.uint8)
    pal[1] = (128, 0, 0)                  # DAVIS palette: object 1 is dark red
    img.putpalette(pal.ravel().tolist())
    img.save(HERE / "bigbuckbunny_mask_00000.png")


if __name__ == "__main__":
    main(sys.argv[1])
