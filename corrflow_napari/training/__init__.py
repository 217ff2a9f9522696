"""Self-supervised CorrFlow training and fine-tuning (plain torch, no Qt).

The objective follows ``docs/corrflow-method.md`` (Lai & Xie, BMVC 2019):

* a training sample is a clip of 3 frames ``i, i+s, i+2s`` (random crop, modest random
  rescale, random horizontal flip);
* the encoder sees the frames through the information bottleneck (colour dropout + a
  little jitter); the *targets* are the unaltered frames' Lab (a, b) colours quantised
  to the model's 16 K-means centroids (``model.centroids``, fitted on training frames
  at start when they are all zero);
* the values copied by the pointer are the one-hot class maps average-pooled by 4
  (soft class distributions at feature resolution); frame k is rebuilt from frame k-1
  through restricted attention (13x13 window, raw dot product, temperature 1);
* forward losses 0->1 and 1->2 (frame 1's values are its ground truth with probability
  p, else the model's own reconstruction: scheduled sampling, p = 0.9 -> 0.6 linearly);
  cycle losses 0->1->0 and 0->1->2->1->0 against frame 0;
* loss = 1.0 * sum(forward NLL) + 0.1 * sum(cycle NLL) of the x4 bilinearly upsampled
  class probabilities against the true class of every pixel.

Every frame is encoded once per step and its features are reused by all paths.

Public API: :class:`TrainConfig`, :class:`ClipSampler`, :func:`clip_loss`,
:func:`train_step`, :func:`train`, :func:`finetune`, and the CLI helpers
:func:`add_train_arguments`, :func:`train_cli`, :func:`add_finetune_arguments`,
:func:`finetune_cli`. ``python -m corrflow_napari.training VIDEO... --out X.pt`` runs
:func:`train_cli` (also under ``torchrun``).
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..model.attention import full_attention, restricted_attention
from ..model.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from ..model.colour import colour_dropout, colour_jitter, fit_ab_centroids, quantise_ab, rgb_to_lab
from ..model.encoder import EncoderConfig
from ..model.features import CorrFlowModel

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".gif", ".ogv", ".flv", ".3gp", ".ts", ".mts", ".m2ts"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


# --------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """Training hyper-parameters. ``TrainConfig()`` == :meth:`paper` (the paper's recipe).

    ``batch`` is per process: under ``torchrun`` with N processes the global batch is
    N * batch (the learning rate is not rescaled).
    """

    crop: int = 256                       # square training crop (multiple of 4)
    batch: int = 6                        # clips per step (per process)
    interval: int | None = None           # frame step s; None: round(fps / 6) if fps known
    default_interval: int = 4             # s when the fps is unknown (arrays, frame folders)
    scale_to: str = "crop"                # "crop": short side -> crop * U(scale); "native"
    scale: tuple[float, float] = (1.0, 1.25)   # log-uniform random rescale range
    flip: bool = True                     # random horizontal flip (same for the 3 frames)
    iters: int = 1_000_000                # optimisation steps
    lr: float = 2e-4                      # Adam learning rate
    betas: tuple[float, float] = (0.9, 0.999)
    lr_milestones: tuple[float, ...] = (0.4, 0.6, 0.8)   # fractions of iters: lr *= lr_gamma
    lr_gamma: float = 0.5
    p_start: float = 0.9                  # scheduled sampling: P(ground truth) at step 0
    p_end: float = 0.6                    # ... at the last step (linear in between)
    width: float = 1.0                    # encoder channel multiplier (1.0 = paper)
    radius: int = 6                       # M: (2M+1)^2 window at feature resolution
    temperature: float = 1.0              # affinity = raw dot product / temperature
    colour_dropout: bool = True           # information bottleneck (ablation flag)
    jitter_p: float = 0.1                 # per-frame probability of 10% colour jitter
    restricted: bool = True               # False: full (all-pairs) attention
    scheduled_sampling: bool = True       # False: frame 1 values are always ground truth
    cycle: bool = True                    # cycle-consistency losses
    forward_weight: float = 1.0
    cycle_weight: float = 0.1
    prob_eps: float = 1e-6                # probabilities are clamped to >= eps before log
    frozen_bn: bool = False               # BatchNorm in eval mode (used by fine-tuning)
    seed: int = 0
    save_every: int = 1000                # checkpoint every N steps (and at the end)
    log_every: int = 50                   # log line every N steps
    mean_window: int = 50                 # running mean of the loss over the last N steps
    centroid_clips: int = 16              # clips sampled to fit the 16 (a, b) centroids

    def __post_init__(self):
        self.scale = tuple(float(v) for v in self.scale)
        self.betas = tuple(float(v) for v in self.betas)
        self.lr_milestones = tuple(float(v) for v in self.lr_milestones)
        if self.crop < 16 or self.crop % 4:
            raise InputError(f"crop size {self.crop} must be a multiple of 4 and >= 16.")
        if self.batch < 1 or self.iters < 1:
            raise InputError("batch and iters must be >= 1.")
        if self.scale_to not in ("crop", "native"):
            raise InputError(f"scale_to must be 'crop' or 'native', not {self.scale_to!r}.")
        if self.interval is not None and self.interval < 1:
            raise InputError(f"frame interval {self.interval} must be >= 1.")

    @classmethod
    def paper(cls, **kw) -> TrainConfig:
        """The paper / authors' recipe: 256x256, batch 6, Adam 2e-4, 1M iterations, width 1."""
        return cls(**kw)

    @classmethod
    def cpu(cls, **kw) -> TrainConfig:
        """A configuration that trains in hours, not years, on a small CPU: 128x128 crops,
        batch 2, a half-width encoder (1.3M parameters), 5000 steps.

        Measured on the project's shared 2-core CPU (load average ~10): 1.6-1.8 s/step
        with 1 torch thread (5000 steps ~ 2.5 h); the paper config took 68 s/step there
        (and 4.3 GB of memory), i.e. 1M steps would take years.
        """
        base = dict(crop=128, batch=2, width=0.5, iters=5000, save_every=250, log_every=10,
                    mean_window=20)
        base.update(kw)
        return cls(**base)

    @classmethod
    def finetune(cls, **kw) -> TrainConfig:
        """Fine-tuning defaults (see :func:`finetune` for the measurements behind them)."""
        base = dict(crop=128, batch=2, lr=1e-4, iters=60, lr_milestones=(),
                    scale_to="native", scale=(0.5, 1.0), frozen_bn=True, save_every=0,
                    log_every=10, mean_window=10, centroid_clips=8)
        base.update(kw)
        return cls(**base)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate at 0-based ``step``: halved at each milestone fraction of iters."""
    n = sum(step >= int(round(m * config.iters)) for m in config.lr_milestones)
    return config.lr * config.lr_gamma ** n


def p_at(step: int, config: TrainConfig, fraction: float | None = None) -> float:
    """Scheduled-sampling P(ground truth): p_start at step 0, p_end at the last step."""
    if fraction is None:
        fraction = step / max(1, config.iters - 1)
    fraction = min(max(fraction, 0.0), 1.0)
    return config.p_start + (config.p_end - config.p_start) * fraction


def interval_for(fps: float | None, config: TrainConfig) -> int:
    """Frame step s: config.interval, else round(fps / 6) (the paper's 6 fps sampling)."""
    if config.interval is not None:
        return int(config.interval)
    if fps is not None and np.isfinite(fps) and fps > 0:
        return max(1, int(round(float(fps) / 6.0)))
    return int(config.default_interval)


# --------------------------------------------------------------------------- videos
def expand_video_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Turn files/folders into a list of videos.

    A file is one video. A folder with image files directly inside is one video (a frame
    folder, e.g. a DAVIS sequence). Any other folder is searched: each video file and
    each sub-folder (recursively, same rules) becomes a video; a DAVIS root
    (``JPEGImages/`` + ``Annotations/``) contributes only its ``JPEGImages``.
    """
    out: list[Path] = []

    def visit(p: Path, top: bool):
        if p.is_file():
            if top or p.suffix.lower() in VIDEO_EXTENSIONS:
                out.append(p)
            return
        if not p.is_dir():
            if top:
                raise InputError(f"training video {p} does not exist.")
            return
        children = sorted(c for c in p.iterdir() if not c.name.startswith("."))
        if any(c.is_file() and c.suffix.lower() in IMAGE_EXTENSIONS for c in children):
            out.append(p)
            return
        if (p / "JPEGImages").is_dir():
            visit(p / "JPEGImages", False)
            return
        for c in children:
            visit(c, False)

    for p in paths:
        visit(Path(p), True)
    return out


def _as_video(v):
    """A path (opened lazily with ``open_video``), a Video, or a (T, H, W, 3) uint8 array."""
    if isinstance(v, (str, os.PathLike)):
        from ..io import open_video  # written separately; imported only when needed
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


def _frame_rgb(frame) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=2)
    if f.shape[-1] == 4:
        f = f[..., :3]
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=2)
    if f.dtype != np.uint8:
        f = np.clip(f, 0, 255).astype(np.uint8)
    return f


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
        c = self.config
        vi = int(rng.choice(len(self.videos), p=self.weights))
        v, s = self.videos[vi], self.intervals[vi]
        t0 = int(rng.integers(self.starts[vi]))
        frames = [_frame_rgb(v[t0 + k * s]) for k in range(3)]
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
        return torch.stack([self.sample_clip(rng) for _ in range(batch)])


def _step_rngs(seed: int, rank: int, step: int) -> tuple[np.random.Generator, torch.Generator]:
    """Random streams for one step, derived from (seed, rank, step): resuming at any step
    reproduces the uninterrupted run exactly, and every rank samples different clips."""
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


# --------------------------------------------------------------------------- objective
def _nll(recon: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """recon (B, K, h, w) class probabilities at feature resolution; target (B, H, W)."""
    up = F.interpolate(recon, scale_factor=4, mode="bilinear", align_corners=False)
    up = up[:, :, :target.shape[1], :target.shape[2]].contiguous()   # NLL2d backward needs it
    return F.nll_loss(torch.log(up.clamp(min=eps, max=1.0)), target)


def clip_loss(encoder: nn.Module, clip: torch.Tensor, centroids: torch.Tensor,
              config: TrainConfig, p_gt: float,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """The CorrFlow objective on a batch of 3-frame clips.

    clip: (B, 3, 3, H, W) RGB in [0, 1] (H, W multiples of 4) on the training device.
    Returns (loss, parts) where parts holds the float value of every term.
    """
    b, t, _, h, w = clip.shape
    if t != 3:
        raise ValueError(f"a training clip has 3 frames, got {t}")
    k = centroids.shape[0]
    with torch.no_grad():   # targets come from the unaltered frames
        cls = quantise_ab(rgb_to_lab(clip.flatten(0, 1)), centroids.to(clip))   # BT,H,W
        onehot = F.one_hot(cls, k).permute(0, 3, 1, 2).to(clip.dtype)
        soft = F.avg_pool2d(onehot, 4, 4, ceil_mode=True)                        # BT,K,h,w
        cls = cls.view(b, t, h, w)
        soft = soft.view(b, t, k, *soft.shape[-2:])
    x = clip   # jitter first (on [0, 1] frames), then dropout's channel rescaling
    if config.jitter_p > 0:
        x = colour_jitter(x, strength=0.1, p=config.jitter_p, generator=generator)
    if config.colour_dropout:
        x = colour_dropout(x, generator=generator)
    feats = encoder(x.flatten(0, 1))                                            # BT,C,h,w
    feats = feats.view(b, t, *feats.shape[1:])
    if feats.shape[-2:] != soft.shape[-2:]:
        raise ValueError(f"feature map {tuple(feats.shape[-2:])} does not match the pooled "
                         f"labels {tuple(soft.shape[-2:])}")

    def copy(q: int, r: int, values: torch.Tensor) -> torch.Tensor:
        """Rebuild frame q's class distribution by copying ``values`` from frame r."""
        if config.restricted:
            return restricted_attention(feats[:, q], feats[:, r:r + 1], values[:, None],
                                        radius=config.radius,
                                        temperature=config.temperature)
        return full_attention(feats[:, q], feats[:, r:r + 1], values[:, None],
                              temperature=config.temperature)

    eps = config.prob_eps
    parts: dict[str, float] = {}
    r1 = copy(1, 0, soft[:, 0])                                   # 0 -> 1
    l01 = _nll(r1, cls[:, 1], eps)
    if config.scheduled_sampling:
        use_gt = (torch.rand(b, generator=generator) < p_gt).to(clip.device)
        ref1 = torch.where(use_gt[:, None, None, None], soft[:, 1], r1)
    else:
        use_gt = torch.ones(b, dtype=torch.bool)
        ref1 = soft[:, 1]
    r2 = copy(2, 1, ref1)                                         # 1 -> 2
    l12 = _nll(r2, cls[:, 2], eps)
    forward = l01 + l12
    loss = config.forward_weight * forward
    parts.update(forward_01=float(l01.detach()), forward_12=float(l12.detach()),
                 gt_fraction=float(use_gt.float().mean()))
    if config.cycle:
        c0 = copy(0, 1, r1)                                       # 0 -> 1 -> 0
        l010 = _nll(c0, cls[:, 0], eps)
        chain2 = r2 if not bool(use_gt.any()) else copy(2, 1, r1)  # 0 -> 1 -> 2 (no GT)
        back1 = copy(1, 2, chain2)                                # ... -> 1
        back0 = copy(0, 1, back1)                                 # ... -> 0
        l01210 = _nll(back0, cls[:, 0], eps)
        cyc = l010 + l01210
        loss = loss + config.cycle_weight * cyc
        parts.update(cycle_010=float(l010.detach()), cycle_01210=float(l01210.detach()))
    parts["loss"] = float(loss.detach())
    return loss, parts


def set_bn_frozen(module: nn.Module, frozen: bool = True) -> None:
    """Put every BatchNorm layer in eval mode (running statistics neither used from the
    batch nor updated); affine weights stay trainable."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train(not frozen and module.training)


def train_step(model: CorrFlowModel, optimizer: torch.optim.Optimizer, clip: torch.Tensor,
               config: TrainConfig, step: int, generator: torch.Generator | None = None,
               encoder: nn.Module | None = None, p_gt: float | None = None,
               lr: float | None = None) -> dict:
    """One optimisation step at 0-based ``step`` (lr and p follow their schedules unless
    given). ``encoder`` is the module to call (the DDP wrapper under torchrun); defaults to
    ``model.encoder``. Returns the loss parts plus ``lr`` and ``p_gt``."""
    encoder = encoder if encoder is not None else model.encoder
    lr = lr_at(step, config) if lr is None else lr
    p_gt = p_at(step, config) if p_gt is None else p_gt
    for g in optimizer.param_groups:
        g["lr"] = lr
    model.train()
    if config.frozen_bn:
        set_bn_frozen(model)
    optimizer.zero_grad(set_to_none=True)
    loss, parts = clip_loss(encoder, clip, model.centroids, config, p_gt, generator)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {float(loss)} at step {step}")
    loss.backward()
    optimizer.step()
    parts.update(lr=lr, p_gt=p_gt)
    return parts


def make_optimizer(model: CorrFlowModel, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.encoder.parameters(), lr=config.lr, betas=config.betas)


# --------------------------------------------------------------------------- distributed
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str | torch.device) -> tuple[_Dist, torch.device]:
    """Initialise torch.distributed when launched by torchrun (RANK/WORLD_SIZE set)."""
    from ..device import pick_device
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return _Dist(), pick_device(device)
    import torch.distributed as dist
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    name = str(device).lower()
    use_cuda = torch.cuda.is_available() and (name == "auto" or name.startswith("cuda"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    here = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        here = True
    return _Dist(rank, world, local, here), dev


# --------------------------------------------------------------------------- train
def _noop(*_a, **_k):
    return None


@dataclass
class TrainResult:
    path: Path
    model: CorrFlowModel
    step: int
    losses: list = field(default_factory=list)
    cancelled: bool = False


def _check_out(out: Path, *sources) -> None:
    from ..model import SHIPPED_WEIGHTS
    o = out.resolve()
    if o == Path(SHIPPED_WEIGHTS).resolve():
        raise InputError(f"--out {out} is the shipped weights file; write to another file.")
    for s in sources:
        if s is not None and o == Path(s).resolve():
            raise InputError(f"--out {out} is the checkpoint training starts from; "
                             "write to another file so the original is kept.")
    if o.is_dir():
        raise InputError(f"--out {out} is a folder; give a .pt file name.")


def train(videos, out, config: TrainConfig | None = None, init=None, resume: bool = False,
          progress: Callable[[int, int, float], None] | None = None,
          cancel: threading.Event | None = None, log: Callable[[str], None] = print,
          device: str | torch.device = "auto") -> Path:
    """Train CorrFlow on ``videos`` and write the checkpoint ``out``; returns ``Path(out)``.

    videos: paths (video files, frame folders, folders of those), Videos, or (T, H, W, 3)
        uint8 arrays; frames are read lazily.
    init: a checkpoint to start from (its width/centroids win over the config's).
    resume: continue from ``out`` if it exists (optimiser, step and schedules restored; the
        random streams are a function of (seed, rank, step), so a resumed run reproduces
        the uninterrupted one exactly). Without ``resume`` an existing ``out`` is refused.
    progress(step, total, loss) is called after every step; ``cancel`` (a threading.Event)
        is checked every step: when set, the current state is saved and train returns.
    Checkpoints are written atomically every ``config.save_every`` steps and at the end.

    Under ``torchrun --nproc_per_node N`` it joins the process group (NCCL on CUDA, gloo
    on CPU), wraps the encoder in DistributedDataParallel and keeps per-rank BatchNorm
    (DDP broadcasts rank 0's BN buffers every forward, and the running statistics are
    averaged over the ranks before every checkpoint, so all ranks stay identical; no
    SyncBatchNorm: each rank already normalises over batch x 3 frames x (crop/4)^2
    positions, and SyncBatchNorm has no CPU/gloo support). Each rank samples its own
    clips (seeded by rank); only rank 0 writes checkpoints, logs and reports progress.
    """
    return _train(videos, out, config, init=init, resume=resume, progress=progress,
                  cancel=cancel, log=log, device=device).path


def _train(videos, out, config: TrainConfig | None = None, init=None, resume: bool = False,
           progress=None, cancel=None, log=print, device="auto") -> TrainResult:
    config = config or TrainConfig.paper()
    out = Path(out)
    _check_out(out, init)
    if out.exists() and not resume:
        raise InputError(f"{out} already exists; pass --resume to continue it, or choose "
                         "another --out (it is never overwritten silently).")
    ddp, dev = _init_distributed(device)
    if not ddp.main:
        log, progress = _noop, None
    try:
        return _train_loop(videos, out, config, init, resume, progress, cancel, log, dev, ddp)
    finally:
        if ddp.initialised_here:
            import torch.distributed as dist
            dist.destroy_process_group()


def _train_loop(videos, out, config, init, resume, progress, cancel, log, dev, ddp):
    start_step, opt_state = 0, None
    if resume and out.exists():
        ck = read_checkpoint(out)
        model = model_from_checkpoint(ck, source=str(out))
        start_step = int(ck.get("step", 0))
        opt_state = ck.get("optimizer")
        old = ck.get("train_config")
        if old:
            diff = {k: (old.get(k), v) for k, v in config.to_dict().items()
                    if k in old and old.get(k) != v}
            if diff:
                log(f"resume: config differs from the checkpoint's: {diff}")
        log(f"resuming {out} at step {start_step}/{config.iters}")
    elif init is not None:
        model = model_from_checkpoint(read_checkpoint(init), source=str(init))
        if model.config.width != config.width:
            log(f"init {init}: using its width {model.config.width} (config: {config.width})")
        log(f"starting from {init}")
    else:
        if resume:
            log(f"{out} does not exist yet: starting a new run")
        torch.manual_seed(config.seed)   # same initial weights on every rank
        model = CorrFlowModel(EncoderConfig(width=config.width))
    model.to(dev)
    sampler = ClipSampler(videos, config, log=log)
    log(f"{len(sampler)} training video(s); frame steps {sorted(set(sampler.intervals))}; "
        f"crop {config.crop}, batch {config.batch} x {ddp.world} process(es), "
        f"{sum(p.numel() for p in model.encoder.parameters()) / 1e6:.2f}M parameters, "
        f"device {dev}")
    if not bool(model.centroids.abs().sum() > 0):
        if ddp.main:
            t0 = time.perf_counter()
            model.centroids.copy_(fit_centroids(sampler, config, model.centroids.shape[0]))
            log(f"fitted {model.centroids.shape[0]} (a, b) colour centroids on "
                f"{config.centroid_clips * 3} training frames ({time.perf_counter() - t0:.1f} s)")
    optimizer = make_optimizer(model, config)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
    encoder: nn.Module = model.encoder
    if ddp.world > 1:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP
        dist.broadcast(model.centroids, 0)
        encoder = DDP(model.encoder, device_ids=[dev.index] if dev.type == "cuda" else None,
                      broadcast_buffers=True)

    def save(step: int, recent) -> None:
        _average_buffers(model.encoder, ddp)   # every rank: BN running stats of all ranks
        if not ddp.main:
            return
        save_checkpoint(out, model, optimizer=optimizer.state_dict(), step=step,
                        train_config=config.to_dict(), world_size=ddp.world,
                        loss_mean=float(np.mean(recent)) if recent else None)

    losses: list[float] = []
    recent: deque = deque(maxlen=max(1, config.mean_window))
    step = start_step
    cancelled = False
    t_last, s_last = time.perf_counter(), step
    if step >= config.iters:
        log(f"{out} is already at step {step} >= iters {config.iters}: nothing to do")
    while step < config.iters:
        if _cancel_requested(cancel, ddp):
            cancelled = True
            break
        np_rng, gen = _step_rngs(config.seed, ddp.rank, step)
        clip = sampler.sample(config.batch, np_rng).to(dev, non_blocking=True)
        parts = train_step(model, optimizer, clip, config, step, gen, encoder=encoder)
        step += 1
        losses.append(parts["loss"])
        recent.append(parts["loss"])
        if progress is not None:
            progress(step, config.iters, parts["loss"])
        if step % max(1, config.log_every) == 0 or step == config.iters or step == 1:
            now = time.perf_counter()
            rate = (step - s_last) / max(now - t_last, 1e-9)
            t_last, s_last = now, step
            log(f"step {step}/{config.iters} loss {parts['loss']:.4f} "
                f"mean{len(recent)} {np.mean(recent):.4f} lr {parts['lr']:.2e} "
                f"p {parts['p_gt']:.3f} {rate:.3g} step/s")
        if config.save_every and step % config.save_every == 0 and step < config.iters:
            save(step, recent)
    save(step, recent)
    if cancelled:
        log(f"cancelled at step {step}: saved {out} (continue with --resume)")
    else:
        log(f"saved {out} (step {step})")
    return TrainResult(out, model, step, losses, cancelled)


def _average_buffers(module: nn.Module, ddp: _Dist) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over the ranks.

    DDP broadcasts rank 0's buffers before every forward, but each rank's last forward
    updates its own copy; averaging before a checkpoint leaves every rank with the same
    statistics, estimated from the global batch."""
    if ddp.world <= 1:
        return
    import torch.distributed as dist
    with torch.no_grad():
        for b in module.buffers():
            if b.is_floating_point():
                dist.all_reduce(b, op=dist.ReduceOp.SUM)
                b.div_(ddp.world)


def _cancel_requested(cancel, ddp: _Dist) -> bool:
    if cancel is None:
        return False
    flag = bool(cancel.is_set())
    if ddp.world > 1:   # every rank must stop at the same step
        import torch.distributed as dist
        t = torch.tensor([1.0 if flag else 0.0])
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        flag = bool(t.item() > 0)
    return flag


# --------------------------------------------------------------------------- finetune
def finetune(model: CorrFlowModel, frames, iters: int | None = None,
             minutes: float | None = None,
             progress: Callable[[int, int | None, float], None] | None = None,
             cancel: threading.Event | None = None, out=None,
             config: TrainConfig | None = None,
             log: Callable[[str], None] | None = None) -> CorrFlowModel:
    """Fine-tune a COPY of ``model`` on one video with the training objective.

    frames: a Video or a (T, H, W, 3) uint8 array (the user's clip).
    Stops after ``iters`` steps, after ``minutes`` of wall time, or when ``cancel`` is set
    (whichever comes first; neither given: ``config.iters``). Returns the copy with the
    weights of lowest running-mean loss (window ``config.mean_window``), in eval mode on
    ``model``'s device. The original model (and its file) is never modified. With ``out``
    the best weights are saved there atomically after an improvement (at most every 10 s,
    and at the end), so a crash leaves the last good checkpoint; ``out`` may not be the
    shipped weights or the file ``model`` was loaded from (``model.weights_path``).
    progress(step, total, loss): total is None when only ``minutes`` bounds the run.

    Defaults (:meth:`TrainConfig.finetune`): crop 128, batch 2, 60 steps, lr 1e-4.
    Measured with the full-width (paper) encoder on the project's shared 2-core CPU
    (load average ~10, so an idle machine is faster): crop 128 / batch 2 5.2-5.8 s/step
    with 1 thread (8.7-10 s with 2 contended threads); batch 1 7.9-8.3 s (2 threads);
    crop 160 12-13 s; crop 192 22-27 s. The cost is ~80% encoder forward/backward and
    grows with crop^2 x batch, so 128 x 2 is the largest setting that keeps 60 steps
    within ~5-10 minutes; a 128 crop still holds a 32x32 feature map, well above the
    13x13 attention window. lr 1e-4 is constant (half the paper's: the model is already
    trained and the data is one clip; no halving because runs are often bounded in
    minutes). Crops are taken at the clip's native scale (x0.5-1.0), the scale at which
    propagation runs. BatchNorm is frozen (eval mode; its affine weights still train):
    a batch is 2 clips x 3 frames of one video, whose statistics are noisy and
    unrepresentative, and frozen statistics keep the features trained equal to the
    features used at inference (which runs BN in eval mode).
    """
    if not isinstance(model, CorrFlowModel):
        raise InputError("only CorrFlow weights can be fine-tuned (not the Lab baseline).")
    log = log or _noop
    config = config or TrainConfig.finetune()
    if model.inference.frame_bn and config.frozen_bn:
        # the model normalises each frame with its own statistics at inference: train with
        # the batch's statistics too, not with the stored running ones
        config = replace(config, frozen_bn=False)
    if iters is None and minutes is None:
        iters = config.iters
    if iters is not None:
        if iters < 1:
            raise InputError(f"fine-tuning needs iters >= 1, got {iters}.")
        config = replace(config, iters=int(iters))
    source = getattr(model, "weights_path", None)
    if out is not None:
        out = Path(out)
        _check_out(out, source)
    dev = model.device
    ft = copy.deepcopy(model).to(dev)
    ft.weights_path = None
    for p in ft.parameters():
        p.requires_grad_(True)
    sampler = ClipSampler([frames], config, log=log)
    if not bool(ft.centroids.abs().sum() > 0):
        ft.centroids.copy_(fit_centroids(sampler, config, ft.centroids.shape[0]).to(dev))
    optimizer = make_optimizer(ft, config)
    recent: deque = deque(maxlen=max(1, config.mean_window))
    best_state, best_mean, dirty, last_save = None, math.inf, False, -math.inf
    t_start = time.perf_counter()
    deadline = t_start + minutes * 60 if minutes is not None else math.inf
    total = iters
    step = 0

    def write():
        nonlocal dirty, last_save
        if out is not None and best_state is not None:
            keep = {k: v.clone() for k, v in ft.encoder.state_dict().items()}
            ft.encoder.load_state_dict(best_state)
            save_checkpoint(out, ft, step=step, train_config=config.to_dict(),
                            finetuned_from=str(source) if source else None,
                            loss_mean=best_mean)
            ft.encoder.load_state_dict(keep)
            dirty, last_save = False, time.perf_counter()

    try:
        while (iters is None or step < iters) and time.perf_counter() < deadline:
            if cancel is not None and cancel.is_set():
                break
            np_rng, gen = _step_rngs(config.seed, 0, step)
            if iters is not None:
                frac = step / max(1, iters - 1)
            else:
                frac = (time.perf_counter() - t_start) / max(deadline - t_start, 1e-9)
            clip = sampler.sample(config.batch, np_rng).to(dev)
            parts = train_step(ft, optimizer, clip, config, step, gen,
                               p_gt=p_at(step, config, frac), lr=config.lr)
            step += 1
            recent.append(parts["loss"])
            if len(recent) == recent.maxlen or (iters is not None and step == iters
                                                and best_state is None):
                m = float(np.mean(recent))
                if m < best_mean:
                    best_mean, dirty = m, True
                    best_state = {k: v.detach().clone() for k, v in ft.encoder.state_dict().items()}
                    if time.perf_counter() - last_save >= 10:
                        write()
            if progress is not None:
                progress(step, total, parts["loss"])
            if step % max(1, config.log_every) == 0:
                log(f"fine-tune step {step}{'/' + str(iters) if iters else ''} "
                    f"loss {parts['loss']:.4f} mean {np.mean(recent):.4f} best {best_mean:.4f}")
    except BaseException:
        if dirty:          # keep the last good (best) weights on disk, then re-raise
            write()
        raise
    if best_state is None and step > 0:   # stopped before one full window
        best_mean = float(np.mean(recent))
        best_state = {k: v.detach().clone() for k, v in ft.encoder.state_dict().items()}
        dirty = True
    if dirty:
        write()
    if best_state is not None:
        ft.encoder.load_state_dict(best_state)
    ft.eval()
    for p in ft.parameters():
        p.requires_grad_(False)
    ft.weights_path = Path(out).resolve() if out is not None and best_state is not None else None
    ft.finetune_steps = step
    ft.finetune_loss = best_mean
    return ft


# --------------------------------------------------------------------------- CLI
class _ProgressLine:
    """One progress line on stderr (carriage-return updates on a terminal)."""

    def __init__(self, label: str, stream=None):
        self.label, self.stream = label, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = self.s0 = None
        self.last = 0.0
        self.mean = None

    def __call__(self, step: int, total, loss: float) -> None:
        self.mean = loss if self.mean is None else 0.95 * self.mean + 0.05 * loss
        now = time.perf_counter()
        if self.t0 is None:                 # rate from the first reported step on
            self.t0, self.s0 = now, step
        done = total is not None and step >= total
        if not done and now - self.last < (0.5 if self.tty else 30):
            return
        self.last = now
        rate = (step - self.s0) / (now - self.t0) if now > self.t0 else 0.0
        tot = f"/{total}" if total else ""
        eta = ""
        if total and rate > 0:
            s = int((total - step) / rate)
            eta = f" ETA {s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"
        line = (f"{self.label} {step}{tot} loss {loss:.3f} (avg {self.mean:.3f}) "
                f"{rate:.2f} step/s{eta}")
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        if done and self.tty:
            self.stream.write("\n")
        self.stream.flush()


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``corrflow train`` options to ``parser`` (a subparser)."""
    parser.add_argument("videos", nargs="+",
                        help="training videos: video files, frame folders, or folders of them")
    parser.add_argument("--out", "-o", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--paper", action="store_true",
                        help="the paper's recipe (256 crops, batch 6, width 1, 1M steps); "
                             "default: paper on a GPU, a CPU-sized recipe on a CPU")
    parser.add_argument("--iters", type=int, default=None, help="training steps")
    parser.add_argument("--size", type=int, default=None, help="square crop size (pixels)")
    parser.add_argument("--batch", type=int, default=None, help="clips per step (per process)")
    parser.add_argument("--width", type=float, default=None,
                        help="encoder channel multiplier (1.0 = paper)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--init", default=None, help="checkpoint to start from")
    parser.add_argument("--resume", action="store_true", help="continue --out if it exists")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--no-colour-dropout", dest="no_colour_dropout", action="store_true",
                        help="ablation: no colour dropout")
    parser.add_argument("--full-attention", dest="full_attention", action="store_true",
                        help="ablation: all-pairs instead of restricted attention")
    parser.add_argument("--no-scheduled-sampling", dest="no_scheduled_sampling",
                        action="store_true", help="ablation: always copy ground truth")
    parser.add_argument("--no-cycle", dest="no_cycle", action="store_true",
                        help="ablation: no cycle-consistency losses")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from ``corrflow train`` arguments."""
    from ..device import pick_device
    paper = bool(getattr(args, "paper", False))
    if not paper:
        try:
            paper = pick_device(getattr(args, "device", "auto")).type == "cuda"
        except InputError:
            paper = False
    cfg = TrainConfig.paper() if paper else TrainConfig.cpu()
    over = {"iters": "iters", "size": "crop", "batch": "batch", "width": "width", "lr": "lr",
            "seed": "seed"}
    kw = {dst: getattr(args, src) for src, dst in over.items()
          if getattr(args, src, None) is not None}
    kw.update(colour_dropout=not getattr(args, "no_colour_dropout", False),
              restricted=not getattr(args, "full_attention", False),
              scheduled_sampling=not getattr(args, "no_scheduled_sampling", False),
              cycle=not getattr(args, "no_cycle", False))
    if "crop" in kw and kw["crop"] % 4:
        raise InputError(f"--size {kw['crop']} must be a multiple of 4.")
    if "iters" in kw and cfg.save_every > kw["iters"]:
        kw.setdefault("save_every", max(1, kw["iters"] // 10))
    return replace(cfg, **kw)


class _CancelOnSigint:
    """First Ctrl-C: set ``event`` (train saves and returns); second: interrupt."""

    def __init__(self, event: threading.Event, log):
        self.event, self.log, self.old = event, log, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        self.log("interrupt: saving a checkpoint at the end of this step "
                 "(Ctrl-C again to abort without saving)")

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        return False


def _stderr(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def train_cli(args: argparse.Namespace) -> int:
    """``corrflow train``: train and write ``--out``; returns the exit status 0 (bad input
    raises InputError)."""
    config = config_from_args(args)
    videos = expand_video_paths(args.videos)
    if not videos:
        raise InputError(f"no videos found in {' '.join(map(str, args.videos))}.")
    rank0 = int(os.environ.get("RANK", "0")) == 0
    cancel = threading.Event()
    line = _ProgressLine("train") if rank0 else None
    with _CancelOnSigint(cancel, _stderr):
        train(videos, args.out, config, init=getattr(args, "init", None),
              resume=bool(getattr(args, "resume", False)), progress=line,
              cancel=cancel, log=_stderr, device=getattr(args, "device", "auto"))
    return 0


def add_finetune_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``corrflow finetune`` options to ``parser`` (a subparser)."""
    parser.add_argument("video", help="the video to fine-tune on (file or frame folder)")
    parser.add_argument("--out", "-o", required=True, help="fine-tuned checkpoint to write (.pt)")
    parser.add_argument("--iters", type=int, default=None,
                        help=f"steps (default {TrainConfig.finetune().iters} unless --minutes)")
    parser.add_argument("--minutes", type=float, default=None, help="wall-time limit")
    parser.add_argument("--weights", default=None,
                        help="checkpoint to start from (default: the shipped weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    return parser


def finetune_cli(args: argparse.Namespace) -> int:
    """``corrflow finetune``: fine-tune the weights on one video and write ``--out``;
    returns the exit status 0 (bad input raises InputError)."""
    from ..io import open_video
    from ..model import load_model
    if args.weights is not None and str(args.weights).lower() == "lab":
        raise InputError("the Lab baseline has no weights to fine-tune; use CorrFlow weights.")
    if args.iters is not None and args.iters < 1:
        raise InputError(f"--iters {args.iters} must be >= 1.")
    if args.minutes is not None and args.minutes <= 0:
        raise InputError(f"--minutes {args.minutes} must be > 0.")
    model = load_model(args.weights, device=args.device)
    _check_out(Path(args.out), getattr(model, "weights_path", None), args.weights)
    video = open_video(args.video)
    cancel = threading.Event()
    with _CancelOnSigint(cancel, _stderr):
        ft = finetune(model, video, iters=args.iters, minutes=args.minutes,
                      progress=_ProgressLine("fine-tune"), cancel=cancel, out=args.out,
                      log=_stderr)
    _stderr(f"fine-tuned {ft.finetune_steps} steps (best mean loss {ft.finetune_loss:.4f}); "
            f"saved {args.out} - use it with --weights {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corrflow_napari.training",
                                     description="Train CorrFlow (also under torchrun).")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return train_cli(args)
    except InputError as exc:
        _stderr(f"corrflow: error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
