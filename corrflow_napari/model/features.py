"""Feature extractors used for propagation: the learned CorrFlow model and the
no-learning Lab-colour baseline. Both map ``(B, H, W, 3) uint8`` frames to
``(B, C, ceil(H/4), ceil(W/4))`` float features and carry their :class:`InferenceSettings`."""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .colour import rgb_to_lab
from .encoder import CorrFlowEncoder, EncoderConfig
from .inference_settings import InferenceSettings


def frames_to_uint8(frames, device) -> torch.Tensor:
    """(B, H, W, 3) uint8 (numpy or torch) -> (B, 3, H, W) uint8 on ``device`` (a view)."""
    t = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    return t.to(device).permute(0, 3, 1, 2)


def frames_to_tensor(frames, device) -> torch.Tensor:
    """(B, H, W, 3) uint8 (numpy or torch) -> (B, 3, H, W) float32 in [0, 1] on ``device``."""
    return frames_to_uint8(frames, device).float().div_(255)


class AffinityGroup(NamedTuple):
    """One softmax affinity read from ``encode()`` channels ``[start, stop)`` (``stop``
    None = to the end; negative ``start`` counts from the end), mixed in with ``weight``."""

    start: int
    stop: int | None
    metric: str
    temperature: float
    weight: float
    colour: bool = False      # the channels are Lab colour only


_SETTING_NAMES = frozenset(f.name for f in dataclasses.fields(InferenceSettings))


class FeatureExtractor(nn.Module):
    """Base: ``encode`` frames; ``inference`` (:class:`InferenceSettings`) defines the
    affinity and the feature post-processing. Change it by assigning a new one:
    ``model.inference = dataclasses.replace(model.inference, lab_mix=0.5)``."""

    stride = 4
    name = "base"
    inference = InferenceSettings()
    # label stride (pixels) when PropagationSettings.label_stride is None: sub-cell labels
    # need features that tell a flat object's top edge from its bottom edge
    label_stride = 1

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def __setattr__(self, name, value):
        if name in _SETTING_NAMES:      # would be silently ignored: settings live in inference
            raise AttributeError(f"{name} is an inference setting; assign model.inference = "
                                 f"dataclasses.replace(model.inference, {name}=...).")
        super().__setattr__(name, value)

    def features(self, x: torch.Tensor, stats=None, rgb8=None) -> torch.Tensor:  # pragma: no cover
        """(B, 3, H, W) in [0, 1] (``rgb8``: the same as uint8, or None) -> features."""
        raise NotImplementedError

    def video_statistics(self, frames) -> list | None:
        """Per-frame statistics of ``(N, H, W, 3) uint8`` frames of a video, from which the
        ``bn_stats`` that :meth:`encode` takes for its other frames are interpolated
        (``FrameEncoder``); None: nothing to share."""
        return self.encode_measuring(frames)[1]

    def encode_measuring(self, frames) -> tuple[torch.Tensor, list | None]:
        """``(encode(frames), video_statistics(frames))`` in one pass: each frame encoded
        with its own statistics, which is what ``encode(frames, bn_stats=)`` gives a sampled
        frame (``FrameEncoder`` keeps the sampled frames' features). Here: no statistics."""
        return self.encode(frames), None

    def statistics_frames(self) -> int:
        """How many frames of a video :meth:`video_statistics` wants (0: none)."""
        return 0

    def affinity_groups(self) -> list[AffinityGroup]:
        """How the attention reads ``encode()``: propagated values are the weighted sum of
        each group's attention. One group (all channels) unless ``lab_mix`` > 0 and Lab
        colour is appended: then ``1 - lab_mix`` x that plus ``lab_mix`` x the Lab-colour
        baseline's own affinity on the appended channels (a mixture of the two)."""
        s, lab_s = self.inference, LabFeatures.inference
        whole = AffinityGroup(0, None, s.metric, s.temperature, 1.0, colour=self.name == "lab")
        if s.lab_mix <= 0 or s.lab_weight <= 0:
            return [whole]
        lab = AffinityGroup(-3, None, lab_s.metric, lab_s.temperature * s.lab_weight ** 2,
                            s.lab_mix, colour=True)
        return [g for g in (whole._replace(weight=1 - s.lab_mix), lab) if g.weight > 0]

    @torch.inference_mode()
    def encode(self, frames, bn_stats=None) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, C, h, w) float32 features: L2-normalised if configured,
        with ``lab_weight`` x Lab colour appended when ``lab_weight`` > 0. ``bn_stats``: the
        BatchNorm statistics to use (``CorrFlowEncoder.infer``), e.g. interpolated from
        :meth:`video_statistics` of the frames' video."""
        rgb8 = frames_to_uint8(frames, self.device)
        x = rgb8.float().div_(255)
        return self._finish(self.features(x, bn_stats, rgb8=rgb8), x, rgb8)

    def _finish(self, f: torch.Tensor, x: torch.Tensor,
                rgb8: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output ``f`` of RGB ``x`` (B, 3, H, W) (``rgb8``: as uint8) -> what
        :meth:`encode` returns."""
        f = f.float()
        s = self.inference
        if s.normalize:
            f = F.normalize(f, dim=1)
        if s.lab_weight > 0:
            lab = lab_features(x, rgb8)[:, :, :f.shape[2], :f.shape[3]]
            f = torch.cat([f, s.lab_weight * lab], 1)
        return f


def lab_features(x: torch.Tensor, rgb8: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 3, ceil(H/4), ceil(W/4)) Lab / 100, 4x4 averages
    (``rgb8``: ``x`` as uint8 levels, for the faster path of :func:`rgb_to_lab`)."""
    return F.avg_pool2d(rgb_to_lab(x, rgb8) / 100, 4, 4, ceil_mode=True,
                        count_include_pad=False)


class LabFeatures(FeatureExtractor):
    """No-learning baseline: Lab colour averaged over 4x4 pixels (scaled to ~unit range).

    Affinity: softmax of -|Lab difference|^2 / 0.05, as in the project's reference protocol.
    """

    name = "lab"
    inference = InferenceSettings(metric="negsqdist", temperature=0.05)
    # 4x4 colour averages cannot place a sub-cell pattern: on flat squares moving 4 px a
    # frame, sub-cell labels carried through recent frames flipped the half-covered edge
    # cells (IoU 0.95 -> 0.60; tests/test_sub_cell_labels.py)
    label_stride = 4

    def __init__(self):
        super().__init__()
        self.register_buffer("_anchor", torch.zeros(0))   # follows .to(device)

    def features(self, x: torch.Tensor, stats=None, rgb8=None) -> torch.Tensor:
        return lab_features(x, rgb8)


_FRAME_BN_LOCK = threading.Lock()


@contextlib.contextmanager
def _batchnorm_uses_input_statistics(module: nn.Module):
    """Within the block, BatchNorm layers of ``module`` normalise with the statistics of
    their input and leave their running statistics untouched."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in bns]
    try:
        for m in bns:
            m.training, m.track_running_stats = True, False
        yield
    finally:
        for m, (training, track) in zip(bns, saved):
            m.training, m.track_running_stats = training, track


class CorrFlowModel(FeatureExtractor):
    """The learned encoder plus the colour quantiser's centroids (16, 2)."""

    name = "corrflow"
    fast_inference = True     # False: encode through the plain module forward (comparisons)

    def __init__(self, config: EncoderConfig | None = None, centroids: torch.Tensor | None = None,
                 inference: InferenceSettings | None = None):
        super().__init__()
        self.encoder = CorrFlowEncoder(config)
        self.config = self.encoder.config
        self.register_buffer("centroids", centroids if centroids is not None
                             else torch.zeros(16, 2))
        if inference is not None and not isinstance(inference, InferenceSettings):
            raise TypeError("inference must be an InferenceSettings (a checkpoint's dict: "
                            "InferenceSettings.from_dict)")
        self.inference = inference or InferenceSettings()

    @torch.inference_mode()
    def encode_measuring(self, frames) -> tuple[torch.Tensor, list | None]:
        """With ``frame_bn`` and ``bn_frames``, the statistics are the encoder's BatchNorm
        statistics of each frame ((N, C) rows: :meth:`CorrFlowEncoder.measure`)."""
        if not self.statistics_frames() or len(frames) == 0:
            return self.encode(frames), None
        rgb8 = frames_to_uint8(frames, self.device)
        x = rgb8.float().div_(255)
        f, stats = self.encoder.measure(x)
        return self._finish(f, x, rgb8), stats

    def statistics_frames(self) -> int:
        return self.inference.bn_frames if self.inference.frame_bn else 0

    def features(self, x: torch.Tensor, stats=None, rgb8=None) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, C, H/4, W/4). With ``frame_bn`` every BatchNorm
        normalises each frame with that frame's own statistics instead of the running
        statistics stored at training time (see the model card for the measurements), or
        with ``stats`` (:meth:`video_statistics`) when given. Without autograd
        (``encode``), the encoder's fast inference path."""
        if stats is not None:
            return self.encoder.infer(x, stats=stats)
        if self.fast_inference and not self.training and not torch.is_grad_enabled():
            return self.encoder.infer(x, frame_bn=self.inference.frame_bn)
        if not self.inference.frame_bn or self.training:
            return self.encoder(x)
        with _FRAME_BN_LOCK, _batchnorm_uses_input_statistics(self.encoder):
            return torch.cat([self.encoder(x[i:i + 1]) for i in range(x.shape[0])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)
