"""Self-supervised CorrFlow training and fine-tuning (plain torch, no Qt, no CLI).

- :mod:`.config`: :class:`TrainConfig` and the lr / scheduled-sampling schedules;
- :mod:`.data`: which paths are videos, :class:`ClipSampler` (random 3-frame clips),
  per-step random streams, colour-centroid fitting;
- :mod:`.objective`: the CorrFlow loss (:func:`clip_loss`) and :func:`train_step`;
- :mod:`.distributed`: the ``torchrun`` (DistributedDataParallel) helpers;
- :mod:`.loop`: :func:`train` / :class:`TrainResult`;
- :mod:`.finetune`: :func:`finetune` / :class:`FinetuneResult`;
- :mod:`.label_objective`: fine-tuning's label term (:class:`LabelTerm`): the user's
  painted keyframes through the attention used at inference (copies, pairs, mask cycles);
- :mod:`.finetune_check`: the held-out check that decides whether fine-tuning is kept.
- :mod:`.distill`: a cheaper encoder (narrower blocks) taught to give an encoder's
  features (:func:`~.distill.pruned_student`, :func:`~.distill.distill`).

The ``corrflow train`` / ``corrflow finetune`` commands live in ``corrflow_napari.cli_train``.
"""
from .config import TrainConfig, lr_at, p_at
from .data import ClipSampler, expand_video_paths, fit_centroids, interval_for, step_rngs
from .finetune import FinetuneResult, finetune
from .label_objective import LabelTerm
from .loop import TrainResult, check_out_path, train
from .objective import clip_loss, make_optimizer, set_bn_frozen, train_step

__all__ = [
    "ClipSampler", "FinetuneResult", "LabelTerm", "TrainConfig", "TrainResult", "check_out_path",
    "clip_loss", "expand_video_paths", "finetune", "fit_centroids", "interval_for", "lr_at",
    "make_optimizer", "p_at", "set_bn_frozen", "step_rngs", "train", "train_step",
]
