"""The ``corrflow`` command: a thin shell over the core (see ``corrflow --help``).

Exit codes: 0 success, 2 bad input (one line on stderr), 130 interrupted (Ctrl+C; every
file written so far is complete).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import warnings
from pathlib import Path

from . import __version__
from .cli_progress import CancelOnSigint, ProgressBar
from .cli_train import (
    FINETUNE_INTERRUPT,
    TRAIN_INTERRUPT,
    add_finetune_arguments,
    add_train_arguments,
    cmd_finetune,
    cmd_train,
)
from .errors import InputError


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, unless it is None/False (no value) or the
    help text already states it."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|mps (auto: CUDA, MPS, CPU)")
    p.add_argument("--weights", default=None,
                   help="checkpoint file (default: the shipped weights)")


def _settings_args(p: argparse.ArgumentParser, tracking: bool = False,
                   skip: tuple[str, ...] = ()) -> None:
    """--features and one flag per user-facing propagation setting (but ``skip``); for
    tracking with tracking's own defaults (no --max-keyframes: a point has one keyframe,
    its own frame; no --fusion: points have no two-sided schedule) plus one flag per
    user-facing TrackSettings field (--motion, ...)."""
    from .options import add_arguments
    from .propagation import PropagationSettings
    p.add_argument("--features", choices=["corrflow", "lab"], default="corrflow",
                   help="corrflow: the learned model (default); lab: no-learning Lab-colour "
                        "baseline")
    if not tracking:
        add_arguments(p, PropagationSettings, skip=skip)
        return
    from .tracking import MASK_ONLY_OPTIONS, TrackSettings
    add_arguments(p, TrackSettings().propagation, skip=MASK_ONLY_OPTIONS)
    add_arguments(p, TrackSettings)


def _settings(args):
    from .options import from_arguments
    from .propagation import PropagationSettings
    return from_arguments(PropagationSettings, args)


def _track_settings(args):
    """TrackSettings with the command line's propagation and tracking flags, if given,
    over tracking's own defaults (e.g. top-3 matches)."""
    from dataclasses import replace

    from .options import from_arguments
    from .propagation import PropagationSettings
    from .tracking import TrackSettings
    ts = from_arguments(TrackSettings, args)
    return replace(ts, propagation=from_arguments(PropagationSettings, args, base=ts.propagation))


def _model(args):
    from .model import load_model
    return load_model("lab" if args.features == "lab" else args.weights, device=args.device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corrflow", description="Propagate masks and keypoints through video (CorrFlow).",
        formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"corrflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)

    p = command("propagate", "propagate keyframe masks to every frame")
    p.add_argument("video", help="video file, folder of frames, or tif stack")
    p.add_argument("--mask", action="append", required=True,
                   help="indexed PNG (0 = background); repeat for several keyframes")
    p.add_argument("--mask-frame", action="append", type=int, default=None,
                   help="frame of each --mask (default 0); repeat in the same order")
    p.add_argument("--out", required=True, help="output folder for 00000.png ...")
    p.add_argument("--direction", choices=["both", "forward", "backward"], default="both",
                   help="propagate from each keyframe forward, backward or both ways")
    p.add_argument("--overlay", default=None, help="also write an overlay video (.mp4/.gif)")
    _common(p)
    _settings_args(p)

    p = command("track", "track points through the video")
    p.add_argument("video", help="video file, folder of frames, or tif stack")
    p.add_argument("--points", required=True,
                   help="CSV with columns track_id,t,y,x; a track_id again on another frame "
                        "is a keyframe of that track (e.g. a corrected position)")
    p.add_argument("--out", required=True, help="output CSV track_id,t,y,x,visible")
    _common(p)
    _settings_args(p, tracking=True)

    p = command("eval-davis", "evaluate on a DAVIS-layout folder (J, F, J&F)")
    p.add_argument("root", help="folder holding JPEGImages/480p and Annotations/480p")
    p.add_argument("--sequences", default="all", help="'all' or a comma list")
    p.add_argument("--out", default=None, help="folder for predicted masks + results.json")
    p.add_argument("--jobs", type=int, default=1, help="sequences evaluated in parallel")
    p.add_argument("--baseline", choices=["identity"], default=None,
                   help="identity: copy the first mask to every frame (no propagation)")
    _common(p)
    _settings_args(p)

    p = command("eval-badja", "keypoint PCK on BADJA animal joints (DAVIS videos)")
    p.add_argument("root", help="DAVIS folder(s) with JPEGImages/480p and Annotations/480p; "
                                f"several joined by ',' or '{os.pathsep}' (each sequence is "
                                "taken from the first that has it)")
    p.add_argument("badja", help="folder of BADJA <sequence>.json annotations")
    p.add_argument("--sequences", default="all", help="'all' or a comma list")
    p.add_argument("--out", default=None, help="folder for results.json + <seq>_tracks.csv")
    p.add_argument("--static", action="store_true",
                   help="score only the static floor (points never moved; no model)")
    p.add_argument("--mask", action="store_true",
                   help="give the tracker the object mask of the first annotated frame")
    p.add_argument("--max-frames", type=int, default=None,
                   help="track only this many frames per sequence (quick runs)")
    _common(p)
    _settings_args(p, tracking=True)

    p = command("eval-interactive", "robot user: J&F after each round of corrections (DAVIS "
                "layout; the worst frame's ground truth becomes a keyframe each round)")
    p.add_argument("root", help="folder holding JPEGImages/480p and Annotations/480p")
    p.add_argument("--sequences", default="all", help="'all' or a comma list")
    p.add_argument("--rounds", type=int, default=3, help="correction rounds after round 0")
    p.add_argument("--out", default=None, help="folder for results.json")
    p.add_argument("--pick", default="gt",
                   help="which frame the robot corrects: gt (lowest J) or confidence (least "
                        "confident); a comma list runs one robot per pick")
    p.add_argument("--fusion", dest="fusions", default="distance",
                   help="fusion of the two sides (distance, confidence, one-sided); a comma "
                        "list runs one robot per fusion, sharing the features")
    p.add_argument("--jobs", type=int, default=1, help="sequences evaluated in parallel")
    _common(p)
    _settings_args(p, skip=("fusion",))

    add_train_arguments(command("train", "self-supervised training on unlabelled video"))
    add_finetune_arguments(command("finetune", "fine-tune the weights on one clip (its "
                                               "colours, and painted masks with --mask)"))
    return parser


def _keyframes(args, n_frames: int, hw: tuple[int, int]):
    from .io.masks import read_keyframe_masks
    return read_keyframe_masks(args.mask, args.mask_frame, n_frames, hw, args.video)


def cmd_propagate(args, cancel: threading.Event | None = None) -> int:
    """Write one indexed PNG per frame (and ``--overlay``); stops after the current frame
    when ``cancel`` is set (the PNGs written so far are kept)."""
    from .io import open_video, overlay_frames, write_indexed_png, write_video
    from .propagation import propagate
    video = open_video(args.video)
    keyframes, palette = _keyframes(args, len(video), video.shape[1:3])
    settings = _settings(args)
    model = _model(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for t, m in keyframes.items():
        write_indexed_png(out / f"{t:05d}.png", m, palette)

    def save(t, lab):
        write_indexed_png(out / f"{t:05d}.png", lab, palette)

    labels = propagate(model, video, keyframes, progress=ProgressBar("propagate"),
                       cancel=cancel, settings=settings, direction=args.direction,
                       on_frame=save, keep_labels=bool(args.overlay)).labels
    if cancel is not None and cancel.is_set():
        return 0
    if args.overlay:
        write_video(args.overlay, overlay_frames(video, labels, palette), fps=video.fps or 10)
    print(f"wrote {len(video)} masks to {out}")
    return 0


def cmd_track(args, cancel: threading.Event | None = None) -> int:
    """Track ``--points`` and write the tracks CSV (all frames, so no early stop)."""
    from .io import open_video, read_points_csv, write_tracks_csv
    from .tracking import track_points
    video = open_video(args.video)
    ids, pts = read_points_csv(args.points)
    settings = _track_settings(args)
    model = _model(args)
    tracks = track_points(model, video, pts, progress=ProgressBar("track"), settings=settings,
                          track_ids=ids)
    names = list(dict.fromkeys(ids))        # a repeated id is one track with keyframes
    write_tracks_csv(args.out, names, tracks.positions, tracks.visible)
    print(f"wrote {len(names)} tracks x {len(video)} frames to {args.out}")
    return 0


def cmd_eval_davis(args, cancel: threading.Event | None = None) -> int:
    """J, F and J&F per sequence on a DAVIS-layout folder (table on stdout)."""
    from .evaluation import evaluate_davis, resolve_sequences
    from .metrics import format_table
    seqs = resolve_sequences(args.root, args.sequences)
    features = args.baseline or args.features
    if features == "corrflow":
        _model(args)   # fail early on bad weights / device
    results = evaluate_davis(args.root, seqs, features=features, weights=args.weights,
                             device=args.device, settings=_settings(args), out_dir=args.out,
                             jobs=max(1, args.jobs), log=lambda s: print(s, file=sys.stderr))
    print(f"features: {features}" + (f" ({args.weights})" if args.weights else ""))
    print(format_table(results))
    return 0


def cmd_eval_badja(args, cancel: threading.Event | None = None) -> int:
    """PCK on BADJA keypoints (table on stdout)."""
    from .evaluation import run_eval_badja
    settings = _track_settings(args)
    model = None if args.static else _model(args)
    method = "static" if args.static else args.features
    _, table = run_eval_badja(args.root, args.badja, args.sequences, model=model, method=method,
                              static_only=args.static, settings=settings, use_mask=args.mask,
                              max_frames=args.max_frames, out_dir=args.out,
                              log=lambda s: print(s, file=sys.stderr))
    print(table)
    return 0


def cmd_eval_interactive(args, cancel: threading.Event | None = None) -> int:
    """Robot-user rounds on a DAVIS-layout folder (table of mean J&F per round on stdout)."""
    from .evaluation import (
        evaluate_interactive,
        format_rounds_table,
        resolve_sequences,
        robots_from,
    )
    seqs = resolve_sequences(args.root, args.sequences)
    robots = robots_from(args.pick, args.fusions)
    if args.features == "corrflow":
        _model(args)   # fail early on bad weights / device
    res = evaluate_interactive(args.root, seqs, robots, rounds=args.rounds,
                               features=args.features, weights=args.weights,
                               device=args.device, settings=_settings(args), out_dir=args.out,
                               jobs=max(1, args.jobs), log=lambda s: print(s, file=sys.stderr))
    print(f"features: {args.features}" + (f" ({args.weights})" if args.weights else "")
          + f"; {len(seqs)} sequence(s), mean J&F after each round")
    print(format_rounds_table(res["mean"]))
    return 0


_STOP_AFTER_FRAME = ("interrupt: stopping after this frame; the files written so far are "
                     "kept (Ctrl+C again to abort now)")

#: command -> (run(args, cancel), what the first Ctrl+C says; None: it interrupts at once)
COMMANDS = {
    "propagate": (cmd_propagate, _STOP_AFTER_FRAME),
    "track": (cmd_track, None),
    "eval-davis": (cmd_eval_davis, None),
    "eval-badja": (cmd_eval_badja, None),
    "eval-interactive": (cmd_eval_interactive, None),
    "train": (cmd_train, TRAIN_INTERRUPT),
    "finetune": (cmd_finetune, FINETUNE_INTERRUPT),
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status: 0 done, 2 bad input, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run, interrupt = COMMANDS[args.command]
    cancel = threading.Event() if interrupt else None
    try:
        with CancelOnSigint(cancel, interrupt or ""), warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            code = run(args, cancel)
    except InputError as exc:
        print(f"corrflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted()
    return _interrupted() if cancel is not None and cancel.is_set() else code


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (e.g. the working-resolution note) as one line on stderr."""
    kind = "note" if category.__name__.endswith("Note") else "warning"
    print(f"corrflow: {kind}: {message}", file=sys.stderr)


def _interrupted() -> int:
    print("\ncorrflow: interrupted; everything written so far is complete.", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
