"""Colour: sRGB -> Lab in torch, the 16-class (a, b) K-means quantiser, and the
training-time information bottleneck (colour dropout + jitter)."""
from __future__ import annotations

import numpy as np
import torch

_RGB2XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
_WHITE = torch.tensor([0.950456, 1.0, 1.088754])


def _srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    return torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


_LINEAR_TABLES: dict = {}


def _linear_table(device) -> torch.Tensor:
    """(256,) the linear value of each 8-bit sRGB level k (the formula at k / 255)."""
    key = str(device)
    if key not in _LINEAR_TABLES:
        with torch.inference_mode(False):
            levels = torch.arange(256, dtype=torch.float32, device=device).div_(255)
            _LINEAR_TABLES[key] = _srgb_to_linear(levels)
    return _LINEAR_TABLES[key]


def rgb_to_lab(rgb: torch.Tensor, rgb8: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> (B, 3, H, W) CIE Lab (L in [0, 100], a/b ~ [-110, 110]).
    ``rgb8``: the same image as uint8 levels (``rgb`` = ``rgb8 / 255``), when there is one:
    the linearisation is then a table lookup (the same values up to float rounding, a
    third of the time)."""
    if rgb8 is not None and rgb.dtype == torch.float32:
        lin = _linear_table(rgb.device).take(rgb8.long())
    else:
        lin = _srgb_to_linear(rgb)
    xyz = torch.einsum("ij,bjhw->bihw", _RGB2XYZ.to(rgb), lin) / _WHITE.to(rgb)[None, :, None, None]
    eps = 216 / 24389
    f = torch.where(xyz > eps, xyz.clamp_min(1e-12) ** (1 / 3), (24389 / 27 * xyz + 16) / 116)
    L = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([L, a, b], dim=1)


def fit_ab_centroids(frames: np.ndarray, k: int = 16, samples: int = 200_000,
                     iters: int = 30, seed: int = 0) -> np.ndarray:
    """K-means over the (a, b) channels of Lab pixels of ``(N, H, W, 3) uint8`` frames.

    Returns (k, 2) float32 centroids, sorted by angle for reproducibility.
    """
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255
    ab = rgb_to_lab(x)[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)
    ab = ab[torch.from_numpy(rng.choice(len(ab), size=min(samples, len(ab)), replace=False))]
    # k-means++ seeding
    cent = [ab[rng.integers(len(ab))]]
    for _ in range(1, k):
        d = torch.cdist(ab, torch.stack(cent)).min(1).values ** 2
        p = (d / d.sum()).double().numpy()
        cent.append(ab[rng.choice(len(ab), p=p / p.sum())])
    cent = torch.stack(cent)
    for _ in range(iters):
        assign = torch.cdist(ab, cent).argmin(1)
        for j in range(k):
            sel = ab[assign == j]
            if len(sel):
                cent[j] = sel.mean(0)
    order = torch.argsort(torch.atan2(cent[:, 1], cent[:, 0]))
    return cent[order].numpy().astype(np.float32)


def quantise_ab(lab: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) Lab -> (B, H, W) int64 index of the nearest (a, b) centroid ((K, 2))."""
    ab = lab[:, 1:]                                                     # B,2,H,W
    d = ((ab[:, None] - centroids[None, :, :, None, None]) ** 2).sum(2)  # B,K,H,W
    return d.argmin(1)


def colour_dropout(x: torch.Tensor, generator: torch.Generator | None = None,
                   p_keep_all: float = 0.3) -> torch.Tensor:
    """Zero 1 or 2 RGB channels of a clip (same channels for every frame), rescaling the rest.

    x: (B, T, 3, H, W) in [0, 1]. With probability ``p_keep_all`` a sample is left as is.
    """
    out = x.clone()
    for i in range(x.shape[0]):
        if torch.rand(1, generator=generator).item() < p_keep_all:
            continue
        n = 1 + int(torch.randint(0, 2, (1,), generator=generator).item())
        drop = torch.randperm(3, generator=generator)[:n]
        out[i][:, drop] = 0
        out[i] = out[i] * (3 / (3 - n))
    # no clamp: the kept channels are *scaled* (like Dropout2d); clamping to 1 would
    # saturate every value above (3 - n) / 3 and destroy most of their information.
    return out


def colour_jitter(x: torch.Tensor, strength: float = 0.1, p: float = 0.1,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-frame brightness/contrast/saturation jitter of up to ``strength`` with probability p.

    x: (B, T, 3, H, W) in [0, 1].
    """
    out = x.clone()
    b, t = x.shape[:2]
    for i in range(b):
        for j in range(t):
            if torch.rand(1, generator=generator).item() >= p:
                continue
            f = out[i, j]
            u = (torch.rand(3, generator=generator) * 2 - 1) * strength + 1
            f = f * u[0]                                          # brightness
            f = (f - f.mean()) * u[1] + f.mean()                  # contrast
            grey = f.mean(0, keepdim=True)
            f = (f - grey) * u[2] + grey                          # saturation
            out[i, j] = f.clamp(0, 1)
    return out
