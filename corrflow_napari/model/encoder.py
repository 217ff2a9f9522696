"""CorrFlow encoder (paper Table 4): a ResNet-18 variant with output stride 4.

conv1 7x7/2 (64) -> stage 64 /1 -> stage 128 /2 -> stage 256 /1 -> stage 256 /1,
two basic blocks per stage, no max-pool, then a 3x3 conv 256 -> 64 (with bias) giving
a 64-d embedding at H/4 x W/4 (``post_kernel`` 1: a 1x1 conv there, for a cheaper
student). ``width`` scales every channel count (1.0 = paper);
``inner`` narrows the channels inside each block of a stage (between its two 3x3 convs:
the residual stream keeps the stage's width), which is how a distilled encoder is made
cheaper (``training.distill``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class EncoderConfig:
    width: float = 1.0          # channel multiplier; 1.0 is the paper's network
    embed_dim: int = 64         # output embedding channels
    blocks_per_stage: int = 2
    # per stage: the blocks' inner channels as a fraction of the stage's channels
    inner: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    post_kernel: int = 3        # the output convolution's size: 3 (paper) or 1 (cheaper)

    def __post_init__(self):
        self.inner = tuple(float(f) for f in self.inner)     # a checkpoint stores a list
        if len(self.inner) != 4 or not all(0 < f <= 1 for f in self.inner):
            raise ValueError(f"inner must be 4 fractions in (0, 1], got {self.inner}")
        if self.post_kernel not in (1, 3):
            raise ValueError(f"post_kernel must be 1 or 3, got {self.post_kernel}")

    def channels(self) -> tuple[int, int, int, int]:
        return tuple(max(8, int(round(c * self.width))) for c in (64, 128, 256, 256))

    def inner_channels(self) -> tuple[int, int, int, int]:
        """Channels between the two convs of each block, per stage."""
        return tuple(max(8, int(round(c * f))) for c, f in zip(self.channels(), self.inner))

    def to_dict(self) -> dict:
        return asdict(self)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN with an identity (or 1x1 projection) skip."""

    def __init__(self, cin: int, cout: int, stride: int, inner: int | None = None):
        super().__init__()
        inner = inner or cout
        self.conv1 = nn.Conv2d(cin, inner, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor, frame_bn: bool = False) -> torch.Tensor:
        """With ``frame_bn`` each BatchNorm uses each frame's own statistics (as
        :meth:`infer` does), with autograd; otherwise the modules as they are."""
        def norm(y, bn):
            return _norm(y, bn, True) if frame_bn else bn(y)

        out = self.relu(norm(self.conv1(x), self.bn1))
        out = norm(self.conv2(out), self.bn2)
        identity = x if self.skip is None else norm(self.skip[0](x), self.skip[1])
        return self.relu(out + identity)

    def infer(self, x: torch.Tensor, norm: _InferNorm) -> torch.Tensor:
        """:meth:`forward` without autograd, adding and rectifying in place."""
        out = norm(x, self.conv1, self.bn1).relu_()
        out = norm(out, self.conv2, self.bn2)
        identity = x if self.skip is None else norm(x, self.skip[0], self.skip[1])
        return out.add_(identity).relu_()


def _norm(x: torch.Tensor, bn: nn.BatchNorm2d, frame_bn: bool) -> torch.Tensor:
    """``bn`` at inference: with its running statistics, or (``frame_bn``) with each
    frame's own mean and (biased) variance, as a BatchNorm in training mode on that frame
    alone (``instance_norm`` shares the per-channel weight and bias across the frames)."""
    if not frame_bn:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False,
                            0.0, bn.eps)
    if x.shape[0] == 1:
        return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    return F.instance_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)


BatchNormStatistics = list[tuple[torch.Tensor, torch.Tensor]]
"""Per BatchNorm of an encoder, in the order :meth:`CorrFlowEncoder.infer` meets them:
the (mean, biased variance) of its input, (C,) each (shared by every frame), or (B, C):
one row per frame."""


def _folded(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, mean: torch.Tensor,
            var: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))`` with fixed statistics, folded into the convolution (scaled weights
    and a bias: one pass over the activations instead of two). ``mean``, ``var``: (C,), or
    (B, C) for one set per frame of ``x``: several frames (an accelerator's batch) then
    share the convolution and get their own scale and shift after it (the kernels a
    BatchNorm would use; a grouped convolution with one weight set per frame is not
    among the fast paths of every backend)."""
    scale = bn.weight * torch.rsqrt(var + bn.eps)
    bias = bn.bias - mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    if scale.dim() == 2 and scale.shape[0] == 1:         # one frame: a plain convolution
        scale, bias = scale[0], bias[0]
    if scale.dim() == 1:
        return F.conv2d(x, conv.weight * scale.reshape(-1, 1, 1, 1), bias, conv.stride,
                        conv.padding, conv.dilation, conv.groups)
    out = F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    b, c = scale.shape
    return torch.addcmul(bias.reshape(b, c, 1, 1), out, scale.reshape(b, c, 1, 1))


class _InferNorm:
    """Convolution + BatchNorm at inference, called once per BatchNorm in a fixed order:
    with the running statistics (folded), each frame's own (``frame_bn``), given
    statistics (``stats``, folded), or each frame's own while appending them to
    ``record`` (one frame at a time)."""

    def __init__(self, frame_bn: bool, stats: BatchNormStatistics | None = None,
                 record: BatchNormStatistics | None = None):
        self.frame_bn, self.record = frame_bn, record
        self.stats = None if stats is None else iter(stats)

    def __call__(self, x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
        if self.stats is not None:
            return _folded(x, conv, bn, *next(self.stats))
        if not self.frame_bn:
            return _folded(x, conv, bn, bn.running_mean, bn.running_var)
        y = conv(x)
        if self.record is None:
            return _norm(y, bn, True)
        c = y.shape[1]
        mean, var = y.new_zeros(c), y.new_ones(c)    # batch_norm writes the frame's into them
        out = F.batch_norm(y, mean, var, bn.weight, bn.bias, True, 1.0, bn.eps)
        n = y.numel() // c
        self.record.append((mean, var * ((n - 1) / n)))    # it stores the unbiased variance
        return out


class CorrFlowEncoder(nn.Module):
    """(B, 3, H, W) float RGB in [0, 1] -> (B, embed_dim, ceil(H/4), ceil(W/4))."""

    stride = 4

    def __init__(self, config: EncoderConfig | None = None):
        super().__init__()
        self.config = config or EncoderConfig()
        c1, c2, c3, c4 = self.config.channels()
        i1, i2, i3, i4 = self.config.inner_channels()
        n = self.config.blocks_per_stage
        self.stem = nn.Sequential(nn.Conv2d(3, c1, 7, 2, 3, bias=False),
                                  nn.BatchNorm2d(c1), nn.ReLU(inplace=True))

        def stage(cin, cout, stride, inner):
            return nn.Sequential(BasicBlock(cin, cout, stride, inner),
                                 *[BasicBlock(cout, cout, 1, inner) for _ in range(n - 1)])

        self.layer1 = stage(c1, c1, 1, i1)
        self.layer2 = stage(c1, c2, 2, i2)
        self.layer3 = stage(c2, c3, 1, i3)
        self.layer4 = stage(c3, c4, 1, i4)
        k = self.config.post_kernel
        self.post = nn.Conv2d(c4, self.config.embed_dim, k, 1, k // 2, bias=True)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, frame_bn: bool = False) -> torch.Tensor:
        """``frame_bn``: every BatchNorm normalises each frame with that frame's own
        statistics, with autograd (what :meth:`infer` computes; distillation trains so)."""
        if not frame_bn:
            x = self.stem(x)
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.post(x)
        x = F.relu(_norm(self.stem[0](x), self.stem[1], True))
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                x = block(x, frame_bn=True)
        return self.post(x)

    @torch.inference_mode()
    def infer(self, x: torch.Tensor, frame_bn: bool = False,
              stats: BatchNormStatistics | None = None) -> torch.Tensor:
        """Inference: :meth:`forward` in eval mode (``frame_bn``: every BatchNorm normalises
        each frame with that frame's own statistics, as in training mode on one frame), up
        to float rounding. ``stats`` (:data:`BatchNormStatistics`, e.g. interpolated
        between some frames of the same video): every BatchNorm uses those instead. Fixed
        statistics (the running ones or ``stats``) are folded into the convolutions.
        Channels-last activations (oneDNN convolutions without layout reorders), in-place
        ReLU and residual adds; modules and their state untouched, so it is thread-safe.
        (B, 3, H, W) -> (B, embed_dim, ceil(H/4), ceil(W/4)), NCHW."""
        return self._infer(x, _InferNorm(frame_bn, stats))

    @torch.inference_mode()
    def statistics(self, x: torch.Tensor) -> BatchNormStatistics:
        """The BatchNorm statistics of each frame of ``x`` (B, 3, H, W), each passing through
        the network normalised by its own (as ``infer(x, frame_bn=True)``): (B, C) rows, what
        ``infer(x, stats=)`` takes (or, combined over frames, for other frames)."""
        return self.measure(x)[1]

    @torch.inference_mode()
    def measure(self, x: torch.Tensor) -> tuple[torch.Tensor, BatchNormStatistics]:
        """``(infer(x, frame_bn=True), statistics(x))`` in one pass over ``x``."""
        frames: list[BatchNormStatistics] = []
        outputs = []
        for i in range(x.shape[0]):
            record: BatchNormStatistics = []
            outputs.append(self._infer(x[i:i + 1], _InferNorm(True, record=record)))
            frames.append(record)
        stats = [(torch.stack([f[j][0] for f in frames]), torch.stack([f[j][1] for f in frames]))
                 for j in range(len(frames[0]))]
        return torch.cat(outputs), stats

    def _infer(self, x: torch.Tensor, norm: _InferNorm) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        x = norm(x, self.stem[0], self.stem[1]).relu_()
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                x = block.infer(x, norm)
        return self.post(x).contiguous()
