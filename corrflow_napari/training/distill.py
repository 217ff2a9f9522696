"""Distilling the encoder into a cheaper one.

A student with narrower blocks (``EncoderConfig.inner``) starts as the teacher with the
least important inner channels of those blocks removed (:func:`pruned_student`), then
learns to give the teacher's embedding direction at every feature cell
(:func:`distill`: ``1 - cos`` between the L2-normalised features, as the attention
reads them) on random crops of real frames at the working resolution
(:class:`FramePool`). Both networks normalise each frame with its own statistics
(``frame_bn``), as inference does. Plain torch; no labels are used.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..model.encoder import BasicBlock, CorrFlowEncoder, EncoderConfig, _norm
from ..model.features import frames_to_tensor


class FramePool:
    """Frames kept in memory as ``(H, W, 3) uint8`` tensors (sizes may differ) that
    :meth:`crops` samples from."""

    def __init__(self, frames: list[torch.Tensor]):
        if not frames:
            raise ValueError("the frame pool is empty")
        self.frames = frames

    def crops(self, n: int, size: tuple[int, int], rng: np.random.Generator,
              zoom: tuple[float, float] = (0.7, 1.0)) -> torch.Tensor:
        """``n`` random crops ``(n, 3, h, w)`` float in [0, 1]: a random frame, a window
        of ``size / s`` pixels (``s`` uniform in ``zoom``, so 1/s >= 1 shows more of the
        scene, as a smaller working size does) resized to ``size``, flipped half the time."""
        h, w = size
        out = []
        for _ in range(n):
            f = self.frames[rng.integers(len(self.frames))]
            s = rng.uniform(*zoom)
            ch, cw = min(f.shape[0], round(h / s)), min(f.shape[1], round(w / s))
            y, x = rng.integers(f.shape[0] - ch + 1), rng.integers(f.shape[1] - cw + 1)
            c = frames_to_tensor(f[None, y:y + ch, x:x + cw], "cpu")
            if (ch, cw) != (h, w):
                c = F.interpolate(c, size=(h, w), mode="bilinear", align_corners=False,
                                  antialias=True).clamp_(0, 1)
            out.append(c.flip(3) if rng.random() < 0.5 else c)
        return torch.cat(out)


def _inner_importance(block: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    """Per inner channel of ``block`` on input ``x``: the RMS of its activation (after
    conv1, the frame's BatchNorm and ReLU) times the norm of conv2's weights that read it."""
    a = _norm(block.conv1(x), block.bn1, True).relu_()
    rms = a.pow(2).mean(dim=(0, 2, 3)).sqrt()
    return rms * block.conv2.weight.flatten(2).norm(dim=(0, 2))


def _prune_block(src: BasicBlock, dst: BasicBlock, keep: torch.Tensor) -> None:
    """Copy ``src`` into the narrower ``dst``, keeping inner channels ``keep``."""
    dst.conv1.weight.copy_(src.conv1.weight[keep])
    dst.conv2.weight.copy_(src.conv2.weight[:, keep])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst.bn1, name).copy_(getattr(src.bn1, name)[keep])
    dst.bn1.num_batches_tracked.copy_(src.bn1.num_batches_tracked)
    dst.bn2.load_state_dict(src.bn2.state_dict())
    if src.skip is not None:
        dst.skip.load_state_dict(src.skip.state_dict())


@torch.no_grad()
def pruned_student(teacher: CorrFlowEncoder, inner: tuple[float, ...],
                   x: torch.Tensor, post_kernel: int | None = None) -> CorrFlowEncoder:
    """The teacher with ``inner`` (per stage, as ``EncoderConfig.inner``) of each block's
    inner channels: those that matter most on the frames ``x`` ``(B, 3, H, W)`` in [0, 1]
    (:func:`_inner_importance`). Stages left at the teacher's width are copied as they are.
    ``post_kernel`` 1 from a 3x3 output convolution: the sum of its taps (what it computes
    where the features are locally constant)."""
    post_kernel = post_kernel or teacher.config.post_kernel
    if post_kernel > teacher.config.post_kernel:
        raise ValueError(f"post_kernel {post_kernel} is larger than the network pruned "
                         f"from ({teacher.config.post_kernel}).")
    config = EncoderConfig(**{**teacher.config.to_dict(), "inner": tuple(inner),
                              "post_kernel": post_kernel})
    student = CorrFlowEncoder(config)
    student.load_state_dict({k: v for k, v in teacher.state_dict().items()
                             if not k.startswith(("layer1", "layer2", "layer3", "layer4",
                                                  "post."))}, strict=False)
    student.post.bias.copy_(teacher.post.bias)
    student.post.weight.copy_(teacher.post.weight.sum((2, 3), keepdim=True)
                              if post_kernel < teacher.config.post_kernel else teacher.post.weight)
    teacher = teacher.eval()
    h = F.relu(_norm(teacher.stem[0](x), teacher.stem[1], True))
    for t_layer, s_layer in zip((teacher.layer1, teacher.layer2, teacher.layer3, teacher.layer4),
                                (student.layer1, student.layer2, student.layer3, student.layer4)):
        for t_block, s_block in zip(t_layer, s_layer):
            n = s_block.conv1.out_channels
            if n > t_block.conv1.out_channels:
                raise ValueError(f"inner {tuple(inner)} is wider than the network pruned from "
                                 f"({teacher.config.inner}); prune from a wider one.")
            keep = _inner_importance(t_block, h).argsort(descending=True)[:n].sort().values
            _prune_block(t_block, s_block, keep)
            h = t_block(h, frame_bn=True)
    return student


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over cells of ``1 - cos`` between ``(B, C, h, w)`` feature maps."""
    return (1 - F.cosine_similarity(student, teacher, dim=1)).mean()


@dataclass
class DistillConfig:
    steps: int = 3000
    batch: int = 4
    crop: tuple[int, int] = (256, 384)     # (h, w) pixels at the working resolution
    lr: float = 1e-3                       # Adam, cosine decay to 0 over ``steps``
    seed: int = 0


@dataclass
class DistillResult:
    student: CorrFlowEncoder
    losses: list[float]          # per step
    seconds: float


def distill(teacher: CorrFlowEncoder, student: CorrFlowEncoder, pool: FramePool,
            config: DistillConfig | None = None,
            log: Callable[[int, float, float], None] | None = None,
            device: str | torch.device = "cpu") -> DistillResult:
    """Train ``student`` (a copy; the arguments are untouched) towards ``teacher``'s
    normalised features on ``device`` (crops are made on the CPU); the result is on the
    CPU. ``log(step, loss, seconds)`` after each step."""
    c = config or DistillConfig()
    rng = np.random.default_rng(c.seed)
    torch.manual_seed(c.seed)
    student = copy.deepcopy(student).to(device).train()
    teacher = copy.deepcopy(teacher).to(device).eval()
    opt = torch.optim.Adam(student.parameters(), lr=c.lr)
    losses, t0 = [], time.perf_counter()
    for step in range(c.steps):
        for g in opt.param_groups:
            g["lr"] = c.lr * 0.5 * (1 + math.cos(math.pi * step / c.steps))
        x = pool.crops(c.batch, c.crop, rng).to(device, non_blocking=True)
        target = F.normalize(teacher.infer(x, frame_bn=True), dim=1)
        loss = cosine_distance(F.normalize(student(x, frame_bn=True), dim=1), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if log is not None:
            log(step, losses[-1], time.perf_counter() - t0)
    return DistillResult(student.cpu().eval(), losses, time.perf_counter() - t0)
