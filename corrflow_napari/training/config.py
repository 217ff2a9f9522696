"""Training hyper-parameters (:class:`TrainConfig`) and their schedules: learning rate
(:func:`lr_at`) and scheduled-sampling probability (:func:`p_at`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import InputError

PARAM_SETS = ("all", "norm")     # TrainConfig.params


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
    lab_mix: float = 0.0                  # every copy mixes in the Lab-colour attention with
    #   this weight, as inference does with the model's lab_mix (0: the paper's objective)
    forward_weight: float = 1.0
    cycle_weight: float = 0.1
    prob_eps: float = 1e-6                # probabilities are clamped to >= eps before log
    frozen_bn: bool = False               # BatchNorm in eval mode (used by fine-tuning)
    params: str = "all"                   # what trains: "all" the encoder's parameters, or
    #   "norm": only its 1-D ones (normalisation scales and shifts, the output bias)
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
        if not 0.0 <= self.lab_mix < 1.0:
            raise InputError(f"lab_mix {self.lab_mix} must be in [0, 1).")
        if self.params not in PARAM_SETS:
            raise InputError(f"params must be one of {', '.join(PARAM_SETS)}, "
                             f"not {self.params!r}.")
        if self.interval is not None and self.interval < 1:
            raise InputError(f"frame interval {self.interval} must be >= 1.")

    @classmethod
    def paper(cls, **kw) -> TrainConfig:
        """The paper / authors' recipe: 256x256, batch 6, Adam 2e-4, 1M iterations, width 1."""
        return cls(**kw)

    @classmethod
    def cpu(cls, **kw) -> TrainConfig:
        """A configuration that trains in hours, not years, on a small CPU: 128x128 crops,
        batch 2, a half-width encoder (1.3M parameters), 5000 steps (timings:
        docs/measurements-training.md)."""
        base = dict(crop=128, batch=2, width=0.5, iters=5000, save_every=250, log_every=10,
                    mean_window=20)
        base.update(kw)
        return cls(**base)

    @classmethod
    def finetune(cls, **kw) -> TrainConfig:
        """Fine-tuning defaults: 128 crops at the clip's native scale, batch 2, 160 steps
        (about 3 minutes on a 2-core CPU) at a constant lr 1e-4, frozen BatchNorm, with
        or without painted keyframes (the label term, no colour clips; its lr was 1e-3,
        chosen on older weights, until it measured -4.6 J&F on the current default:
        docs/measurements-training.md)."""
        base = dict(crop=128, batch=2, lr=1e-4, iters=160, lr_milestones=(),
                    scale_to="native", scale=(0.5, 1.0), frozen_bn=True, save_every=0,
                    log_every=10, mean_window=10, centroid_clips=8)
        base.update(kw)
        return cls(**base)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples as lists), as stored in checkpoints."""
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys (older/newer checkpoints) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate at 0-based ``step``: halved at each milestone fraction of iters."""
    n = sum(step >= int(round(m * config.iters)) for m in config.lr_milestones)
    return config.lr * config.lr_gamma ** n


def p_at(step: int, config: TrainConfig, fraction: float | None = None) -> float:
    """Scheduled-sampling P(ground truth): p_start at step 0, p_end at the last step
    (``fraction`` in [0, 1] overrides ``step / (iters - 1)``, e.g. elapsed/allowed time)."""
    if fraction is None:
        fraction = step / max(1, config.iters - 1)
    fraction = min(max(fraction, 0.0), 1.0)
    return config.p_start + (config.p_end - config.p_start) * fraction
