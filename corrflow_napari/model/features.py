"""Feature extractors used for propagation: the learned CorrFlow model and the
no-learning Lab-colour baseline. Both map ``(B, H, W, 3) uint8`` frames to
``(B, C, ceil(H/4), ceil(W/4))`` float features and carry their matching settings."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .colour import rgb_to_lab
from .encoder import CorrFlowEncoder, EncoderConfig


def frames_to_tensor(frames, device) -> torch.Tensor:
    """(B, H, W, 3) uint8 (numpy or torch) -> (B, 3, H, W) float32 in [0, 1] on ``device``."""
    t = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    return t.to(device).permute(0, 3, 1, 2).float().div_(255)


class FeatureExtractor(nn.Module):
    """Base: ``encode`` frames; ``metric``/``temperature``/``normalize`` define the affinity."""

    stride = 4
    name = "base"
    metric = "dot"
    temperature = 1.0
    normalize = False

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.inference_mode()
    def encode(self, frames) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, C, h, w) float32 features (L2-normalised if configured)."""
        f = self.features(frames_to_tensor(frames, self.device)).float()
        if self.normalize:
            f = F.normalize(f, dim=1)
        return f


class LabFeatures(FeatureExtractor):
    """No-learning baseline: Lab colour averaged over 4x4 pixels (scaled to ~unit range).

    Affinity: softmax of -|Lab difference|^2 / 0.05, as in the project's reference protocol.
    """

    name = "lab"
    metric = "negsqdist"
    temperature = 0.05

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor([1 / 100, 1 / 100, 1 / 100]).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        lab = rgb_to_lab(x) * self.scale
        return F.avg_pool2d(lab, 4, 4, ceil_mode=True, count_include_pad=False)


class CorrFlowModel(FeatureExtractor):
    """The learned encoder plus the colour quantiser's centroids (16, 2)."""

    name = "corrflow"

    def __init__(self, config: EncoderConfig | None = None, centroids: torch.Tensor | None = None,
                 inference: dict | None = None):
        super().__init__()
        self.encoder = CorrFlowEncoder(config)
        self.config = self.encoder.config
        self.register_buffer("centroids", centroids if centroids is not None
                             else torch.zeros(16, 2))
        inference = inference or {}
        self.metric = inference.get("metric", "dot")
        self.temperature = float(inference.get("temperature", 1.0))
        self.normalize = bool(inference.get("normalize", False))

    def inference_settings(self) -> dict:
        return {"metric": self.metric, "temperature": self.temperature,
                "normalize": self.normalize}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)
