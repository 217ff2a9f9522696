"""The ``corrflow train`` and ``corrflow finetune`` commands: their flags, the
:class:`~corrflow_napari.training.TrainConfig` they select, and the runs (a thin shell
over :mod:`corrflow_napari.training`). Runs under ``torchrun`` too (see README)."""
from __future__ import annotations

import argparse
import os
import threading
from dataclasses import replace
from pathlib import Path

from .cli_progress import ProgressBar, say
from .errors import InputError

#: what the first Ctrl+C does (printed when it arrives)
TRAIN_INTERRUPT = ("interrupt: saving a checkpoint at the end of this step "
                   "(Ctrl+C again to abort without saving)")
FINETUNE_INTERRUPT = ("interrupt: stopping after this step; the best weights so far are "
                      "checked and saved (Ctrl+C again to abort)")


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
    parser.add_argument("--lab-mix", dest="lab_mix", type=float, default=0.0,
                        help="train through the inference mixture: each copy mixes in the "
                             "Lab-colour attention with this weight (0: the paper's objective)")
    parser.add_argument("--no-cycle", dest="no_cycle", action="store_true",
                        help="ablation: no cycle-consistency losses")
    return parser


def config_from_args(args: argparse.Namespace):
    """TrainConfig from ``corrflow train`` arguments: the paper's recipe with --paper or
    on a CUDA device, else :meth:`TrainConfig.cpu`; then the flags given."""
    from .device import pick_device
    from .training import TrainConfig
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
              lab_mix=getattr(args, "lab_mix", 0.0),
              scheduled_sampling=not getattr(args, "no_scheduled_sampling", False),
              cycle=not getattr(args, "no_cycle", False))
    if "crop" in kw and kw["crop"] % 4:
        raise InputError(f"--size {kw['crop']} must be a multiple of 4.")
    if "iters" in kw and cfg.save_every > kw["iters"]:
        kw.setdefault("save_every", max(1, kw["iters"] // 10))
    return replace(cfg, **kw)


def cmd_train(args: argparse.Namespace, cancel: threading.Event | None = None) -> int:
    """``corrflow train``: train and write ``--out`` (bad input raises InputError). When
    ``cancel`` is set the run saves its checkpoint and stops (continue with --resume)."""
    from .training import expand_video_paths, train
    config = config_from_args(args)
    videos = expand_video_paths(args.videos)
    if not videos:
        raise InputError(f"no videos found in {' '.join(map(str, args.videos))}.")
    rank0 = int(os.environ.get("RANK", "0")) == 0     # under torchrun only rank 0 reports
    train(videos, args.out, config, init=getattr(args, "init", None),
          resume=bool(getattr(args, "resume", False)),
          progress=ProgressBar("train", unit="step") if rank0 else None,
          cancel=cancel, log=say, device=getattr(args, "device", "auto"))
    return 0


def add_finetune_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``corrflow finetune`` options to ``parser`` (a subparser)."""
    from .training import TrainConfig
    parser.add_argument("video", help="the video to fine-tune on (file or frame folder)")
    parser.add_argument("--out", "-o", required=True, help="fine-tuned checkpoint to write (.pt)")
    parser.add_argument("--iters", type=int, default=None,
                        help=f"steps (default {TrainConfig.finetune().iters} unless --minutes)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-time limit, the held-out check included")
    parser.add_argument("--mask", action="append", default=None,
                        help="a painted keyframe (indexed PNG, 0 = background) to learn "
                             "from; repeat for several keyframes (default: colours only)")
    parser.add_argument("--mask-frame", action="append", type=int, default=None,
                        help="frame of each --mask (default 0); repeat in the same order")
    parser.add_argument("--no-check", dest="no_check", action="store_true",
                        help="keep the fine-tuned weights without the held-out check")
    parser.add_argument("--weights", default=None,
                        help="checkpoint to start from (default: the shipped weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    return parser


def cmd_finetune(args: argparse.Namespace, cancel: threading.Event | None = None) -> int:
    """``corrflow finetune``: fine-tune the weights on one video (with ``--mask``: also
    on the painted keyframes) and write ``--out`` (bad input raises InputError); says
    whether the held-out check kept the fine-tuned or the starting weights. When
    ``cancel`` is set the run stops after the current step and is checked as usual."""
    from .io import open_video
    from .io.masks import read_keyframe_masks
    from .model import load_model
    from .training import check_out_path, finetune
    if args.weights is not None and str(args.weights).lower() == "lab":
        raise InputError("the Lab baseline has no weights to fine-tune; use CorrFlow weights.")
    if args.iters is not None and args.iters < 1:
        raise InputError(f"--iters {args.iters} must be >= 1.")
    if args.minutes is not None and args.minutes <= 0:
        raise InputError(f"--minutes {args.minutes} must be > 0.")
    model = load_model(args.weights, device=args.device)
    check_out_path(Path(args.out), getattr(model, "weights_path", None), args.weights)
    video = open_video(args.video)
    keyframes = None
    if args.mask:
        keyframes, _ = read_keyframe_masks(args.mask, args.mask_frame, len(video),
                                           video.shape[1:3], args.video)
    elif args.mask_frame:
        raise InputError("--mask-frame given without --mask; give the mask of each frame.")
    res = finetune(model, video, iters=args.iters, minutes=args.minutes,
                   progress=ProgressBar("fine-tune", unit="step"), cancel=cancel,
                   out=args.out, log=say, keyframes=keyframes,
                   check=not getattr(args, "no_check", False))
    learned = res.learned()
    rate = f", {res.seconds_per_step:.2f} s/step" if res.seconds_per_step else ""
    if res.path is None:
        say(f"fine-tuned {res.steps} steps ({learned}); nothing saved")
        return 0
    say(f"fine-tuned {res.steps} steps ({learned}{rate}); {res.summary()}")
    what = "the starting weights, unchanged," if res.kept_start else "the fine-tuned weights"
    say(f"saved {what} to {args.out} - use it with --weights {args.out}")
    return 0
