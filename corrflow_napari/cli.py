"""The ``corrflow`` command: a thin shell over the core (see ``corrflow --help``).

Exit codes: 0 success, 2 bad input (one line on stderr), 130 interrupted (Ctrl+C; every
file written so far is complete).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import InputError


class ProgressBar:
    """A one-line progress bar on stderr: ``label  12/80 [=====     ] 0.84 s/frame``."""

    def __init__(self, label: str, stream=None, unit: str = "frame"):
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        width = 24
        filled = int(width * done / max(total, 1))
        rate = (now - self.t0) / done if done else 0.0
        self.stream.write(f"\r{self.label} {done}/{total} [{'=' * filled}{' ' * (width - filled)}]"
                          f" {rate:.2f} s/{self.unit}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|mps (auto: CUDA, MPS, CPU)")
    p.add_argument("--weights", default=None,
                   help="checkpoint file (default: the shipped weights)")


def _settings_args(p: argparse.ArgumentParser) -> None:
    from .options import add_arguments
    from .propagation import PropagationSettings
    p.add_argument("--features", choices=["corrflow", "lab"], default="corrflow",
                   help="corrflow: the learned model (default); lab: no-learning Lab-colour "
                        "baseline")
    add_arguments(p, PropagationSettings)


def _settings(args):
    from .options import from_arguments
    from .propagation import PropagationSettings
    return from_arguments(PropagationSettings, args)


def _track_settings(args):
    """TrackSettings with the command line's --topk / --n-recent / --motion, if given."""
    from .propagation import TrackSettings
    changes = {"topk": args.topk, "n_recent": args.n_recent,
               "motion": getattr(args, "motion", None)}
    return TrackSettings(**{k: v for k, v in changes.items() if v is not None})


def _track_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--motion", choices=["velocity", "position", "none"], default=None,
                   help="where references are moved before matching: velocity (default; "
                        "constant-velocity prediction), position (last position) or none")


def _model(args):
    from .model import load_model
    return load_model("lab" if args.features == "lab" else args.weights, device=args.device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corrflow", description="Propagate masks and keypoints through video (CorrFlow).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("propagate", help="propagate keyframe masks to every frame")
    p.add_argument("video", help="video file, folder of frames, or tif stack")
    p.add_argument("--mask", action="append", required=True,
                   help="indexed PNG (0 = background); repeat for several keyframes")
    p.add_argument("--mask-frame", action="append", type=int, default=None,
                   help="frame of each --mask (default 0); repeat in the same order")
    p.add_argument("--out", required=True, help="output folder for 00000.png ...")
    p.add_argument("--direction", choices=["both", "forward", "backward"], default="both")
    p.add_argument("--overlay", default=None, help="also write an overlay video (.mp4/.gif)")
    _common(p)
    _settings_args(p)

    p = sub.add_parser("track", help="track points through the video")
    p.add_argument("video")
    p.add_argument("--points", required=True, help="CSV with columns track_id,t,y,x")
    p.add_argument("--out", required=True, help="output CSV track_id,t,y,x,visible")
    _common(p)
    _settings_args(p)
    _track_args(p)

    p = sub.add_parser("eval-davis", help="evaluate on a DAVIS-layout folder (J, F, J&F)")
    p.add_argument("root", help="folder holding JPEGImages/480p and Annotations/480p")
    p.add_argument("--sequences", default="all", help="'all' or a comma list")
    p.add_argument("--out", default=None, help="folder for predicted masks + results.json")
    p.add_argument("--jobs", type=int, default=1, help="sequences evaluated in parallel")
    p.add_argument("--baseline", choices=["identity"], default=None,
                   help="identity: copy the first mask to every frame (no propagation)")
    _common(p)
    _settings_args(p)

    p = sub.add_parser("eval-badja", help="keypoint PCK on BADJA animal joints (DAVIS videos)")
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
    _settings_args(p)
    _track_args(p)

    from . import training
    p = sub.add_parser("train", help="self-supervised training on unlabelled video")
    training.add_train_arguments(p)
    p = sub.add_parser("finetune", help="self-supervised fine-tuning on one clip")
    training.add_finetune_arguments(p)
    return parser


def _keyframes(args, n_frames: int, hw: tuple[int, int]):
    from .io import read_mask
    masks, frames = args.mask, args.mask_frame
    if frames is None:
        if len(masks) > 1:
            raise InputError("several --mask given without --mask-frame; give one "
                             "--mask-frame per --mask, in the same order.")
        frames = [0]
    if len(frames) != len(masks):
        raise InputError(f"{len(masks)} --mask but {len(frames)} --mask-frame; give one "
                         "--mask-frame per --mask.")
    keyframes, palette = {}, None
    for path, t in zip(masks, frames):
        if not -n_frames <= t < n_frames:
            raise InputError(f"--mask-frame {t} is out of range: {args.video} has {n_frames} "
                             f"frames (0..{n_frames - 1}).")
        t %= n_frames
        if t in keyframes:
            raise InputError(f"two masks given for frame {t}; give one --mask per frame.")
        mask, pal = read_mask(path, shape=hw)
        if not (mask > 0).any():
            raise InputError(f"mask {path} contains no object (all pixels are 0); "
                             "paint at least one object with ids 1..N.")
        keyframes[t] = mask
        palette = palette if palette is not None else pal
    return keyframes, palette


def cmd_propagate(args) -> int:
    from .io import open_video, overlay, write_indexed_png, write_video
    from .propagation import propagate_labels
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

    labels = propagate_labels(model, video, keyframes, progress=ProgressBar("propagate"),
                              settings=settings, direction=args.direction, on_frame=save)
    if args.overlay:
        write_video(args.overlay, overlay(video, labels, palette), fps=video.fps or 10)
    print(f"wrote {len(video)} masks to {out}")
    return 0


def cmd_track(args) -> int:
    from .io import open_video, read_points_csv, write_tracks_csv
    from .propagation import track_points
    video = open_video(args.video)
    ids, pts = read_points_csv(args.points)
    settings = _settings(args)
    model = _model(args)
    tracks = track_points(model, video, pts, progress=ProgressBar("track"), settings=settings,
                          track_settings=_track_settings(args))
    write_tracks_csv(args.out, ids, tracks.positions, tracks.visible)
    print(f"wrote {len(ids)} tracks x {len(video)} frames to {args.out}")
    return 0


def cmd_eval_davis(args) -> int:
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


def cmd_eval_badja(args) -> int:
    from .evaluation import run_eval_badja
    settings = _settings(args)
    model = None if args.static else _model(args)
    method = "static" if args.static else args.features
    _, table = run_eval_badja(args.root, args.badja, args.sequences, model=model, method=method,
                              static_only=args.static, settings=settings,
                              track_settings=_track_settings(args), use_mask=args.mask,
                              max_frames=args.max_frames, out_dir=args.out,
                              log=lambda s: print(s, file=sys.stderr))
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "propagate":
            return cmd_propagate(args)
        if args.command == "track":
            return cmd_track(args)
        if args.command == "eval-davis":
            return cmd_eval_davis(args)
        if args.command == "eval-badja":
            return cmd_eval_badja(args)
        from . import training
        if args.command == "train":
            return training.train_cli(args) or 0
        if args.command == "finetune":
            return training.finetune_cli(args) or 0
        parser.error(f"unknown command {args.command}")
    except InputError as exc:
        print(f"corrflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ncorrflow: interrupted; everything written so far is complete.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
