"""Training data: which files are videos (:func:`expand_video_paths`), random 3-frame
clips read lazily from them (:class:`ClipSampler`), the per-step random streams
(:func:`step_rngs`) and the colour centroids fitted on training crops
(:func:`fit_centroids`)."""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.formats import CLIP_EXTENSIONS, is_frame_folder
from ..io.frames import to_rgb8
from ..model.colour import fit_ab_centroids
from .config import TrainConfig


def expand_video_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Turn files/folders into a list of videos.

    A file is one video. A folder with image files directly inside is one video (a frame
    folder, e.g. a DAVIS sequence). Any other folder is searched: each video file and
    each sub-folder (recursively, same rules) becomes a video; a DAVIS root
    (``JPEGImages/`` + ``Annotations/``) contributes only its ``JPEGImages``. Which
    extensions are videos / frames: the io format table (``io.formats``).
    """
    out: list[Path] = []

    def visit(p: Path, top: bool):
        if p.is_file():
            if top or p.suffix.lower() in CLIP_EXTENSIONS:
                out.append(p)
            return
        if not p.is_dir():
            if top:
                raise InputError(f"training video {p} does not exist.")
            return
        if is_frame_folder(p):
            out.append(p)
            return
        if (p / "JPEGImages").is_dir():
            visit(p / "JPEGImages", False)
            return
        for c in sorted(c for c in p.iterdir() if not c.name.startswith(".")):
            visit(c, False)

    for p in paths:
        visit(Path(p), True)
    return out


def interval_for(fps: float | None, config: TrainConfig) -> int:
    """Frame step s: config.interval, else round(fps / 6) (the paper's 6 fps sampling)."""
    if config.interval is not None:
        return int(config.interval)
    if fps is not None and np.isfinite(fps) and fps > 0:
        return max(1, int(round(float(fps) / 6.0)))
    return int(config.default_interval)


def _as_video(v):
    """A path (opened lazily with ``open_video``), a Video, or a (T, H, W, 3) uint8 array."""
    if isinstance(v, (str, os.PathLike)):
        from ..io import open_video
        return open_video(v)
    if isinstance(v, torch.Tensor):
        v = v.cpu().numpy()
    if isinstance(v, np.ndarray):
        if v.ndim != 4 or v.shape[-1] not in (3, 4) or v.dtype != np.uint8:
            raise InputError(f"an in-memory video must be a (T, H, W, 3) uint8 array, "
                             f"got {v.dtype} {v.shape}.")
        return v
    if hasattr(v, "__len__") and hasattr(v, "__getitem__"):
        return v
    raise InputError(f"cannot use {type(v).__name__} as a training video; give a path "
                     "or a (T, H, W, 3) uint8 array.")


class ClipSampler:
    """Random 3-frame clips from a list of videos, indexed lazily (only the 3 frames of a
    sample are read). Each video's frame step is :func:`interval_for` its fps, shortened
    for videos too short for it; videos with fewer than 3 frames are skipped.

    ``sample(batch, rng)`` -> (B, 3, 3, crop, crop) float32 RGB in [0, 1] (B, T, C, H, W).
    The sampler itself holds no random state: all randomness comes from ``rng``.
    """

    def __init__(self, videos, config: TrainConfig, log: Callable[[str], None] | None = None):
        if isinstance(videos, (str, os.PathLike, np.ndarray)) or hasattr(videos, "fps"):
            videos = [videos]
        items = []
        for v in videos:
            if isinstance(v, (str, os.PathLike)):
                items.extend(expand_video_paths([v]))
            else:
                items.append(v)
        self.config = config
        self.videos, self.intervals, self.starts, self.names = [], [], [], []
        for i, item in enumerate(items):
            name = str(item) if isinstance(item, (str, os.PathLike)) else f"video #{i}"
            v = _as_video(item)
            n = len(v)
            if n < 3:
                if log:
                    log(f"skipping {name}: {n} frame(s), a clip needs 3")
                continue
            s = min(interval_for(getattr(v, "fps", None), config), (n - 1) // 2)
            self.videos.append(v)
            self.intervals.append(s)
            self.starts.append(n - 2 * s)
            self.names.append(name)
        if not self.videos:
            raise InputError("no usable training video (each needs at least 3 frames).")
        w = np.asarray(self.starts, dtype=np.float64)
        self.weights = w / w.sum()   # every possible clip equally likely

    def __len__(self) -> int:
        return len(self.videos)

    def sample_clip(self, rng: np.random.Generator) -> torch.Tensor:
        """One clip (3, 3, crop, crop): random video, start, scale, crop and flip."""
        c = self.config
        vi = int(rng.choice(len(self.videos), p=self.weights))
        v, s = self.videos[vi], self.intervals[vi]
        t0 = int(rng.integers(self.starts[vi]))
        frames = [to_rgb8(v[t0 + k * s], scale=(0, 255)) for k in range(3)]
        h, w = frames[0].shape[:2]
        frames = [f if f.shape[:2] == (h, w) else f[:h, :w] for f in frames]
        lo, hi = c.scale
        u = math.exp(rng.uniform(math.log(lo), math.log(hi))) if hi > lo else lo
        base = c.crop / min(h, w) if c.scale_to == "crop" else 1.0
        sc = max(base * u, c.crop / min(h, w))            # never smaller than the crop
        side = min(max(1, int(round(c.crop / sc))), h, w)  # crop side in original pixels
        y0 = int(rng.integers(h - side + 1))
        x0 = int(rng.integers(w - side + 1))
        flip = bool(c.flip and rng.random() < 0.5)
        x = torch.from_numpy(np.stack([f[y0:y0 + side, x0:x0 + side] for f in frames]))
        x = x.permute(0, 3, 1, 2).float().div_(255)        # 3, 3, side, side
        if side != c.crop:
            x = F.interpolate(x, size=(c.crop, c.crop), mode="bilinear", align_corners=False,
                              antialias=side > c.crop).clamp_(0, 1)
        if flip:
            x = x.flip(-1)
        return x

    def sample(self, batch: int, rng: np.random.Generator) -> torch.Tensor:
        """``batch`` clips stacked: (B, 3, 3, crop, crop)."""
        return torch.stack([self.sample_clip(rng) for _ in range(batch)])


def step_rngs(seed: int, rank: int, step: int) -> tuple[np.random.Generator, torch.Generator]:
    """Random streams for one step, derived from (seed, rank, step): resuming at any step
    reproduces the uninterrupted run exactly, and every rank samples different clips.
    Returns (numpy generator for the clip sampler, torch generator for the objective)."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(rank), int(step)])
    a, b = ss.spawn(2)
    gen = torch.Generator().manual_seed(int(b.generate_state(1, dtype=np.uint64)[0] >> 1))
    return np.random.default_rng(a), gen


def fit_centroids(sampler: ClipSampler, config: TrainConfig, k: int = 16) -> torch.Tensor:
    """Fit the (k, 2) Lab (a, b) K-means centroids on random training crops."""
    rng = np.random.default_rng([int(config.seed) & 0xFFFFFFFF, 7919])
    clips = sampler.sample(max(1, config.centroid_clips), rng)          # B,3,3,H,W
    frames = (clips.flatten(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    return torch.from_numpy(fit_ab_centroids(frames, k=k, seed=int(config.seed)))
