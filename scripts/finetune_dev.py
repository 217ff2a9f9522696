"""Fine-tuning on the DAVIS-2016 dev sequences, measured: per sequence, J&F of the shipped
weights and of the weights fine-tuned on that sequence for a wall-time budget, with the
first frame's ground-truth mask as the user's painted frame (label-aware) or colours only.

    python scripts/finetune_dev.py --minutes 3 --mode labels  --out runs/ftdev
    python scripts/finetune_dev.py --minutes 3 --mode colours --out runs/ftdev

Each row (appended to ``OUT/rows.jsonl``, one per sequence, mode and budget) holds the
J&F of the fine-tuned weights (``ft``), the held-out check and the forward colour guard
before/after exactly as :func:`~corrflow_napari.training.finetune` computes them, and
``final``: what the user gets (the shipped weights when the check did not improve or
the guard got worse). The official protocol: the
first-frame mask propagated with the default settings, first and last frames not scored.
The shipped weights' scores are cached in ``OUT/base.json``. Equivalent to
``corrflow finetune SEQ --mask 00000.png --mask-frame 0 --minutes M`` then
``corrflow eval-davis --weights``; here the fine-tuned weights are scored even when the
check keeps the starting ones, so that every sequence fine-tuning would make worse shows.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from corrflow_napari.evaluation import frame_folder, load_annotations, resolve_sequences
from corrflow_napari.io import open_video, write_json_atomic
from corrflow_napari.metrics import evaluate_sequence
from corrflow_napari.model import load_model
from corrflow_napari.model.checkpoint import save_checkpoint
from corrflow_napari.propagation import propagate_labels
from corrflow_napari.training import TrainConfig, finetune
from corrflow_napari.training.finetune import _plan, choose_pseudo_keyframes
from corrflow_napari.training.label_objective import LabelTerm
from corrflow_napari.training.weight_average import mean_state

DEFAULT_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016-dev"


def jf(model, video, gt) -> dict:
    r = evaluate_sequence(gt, propagate_labels(model, video, {0: gt[0]}))
    return {k: 100 * r[k] for k in ("JF", "J", "F")}


def averaged(start, trained):
    """A copy of ``trained`` whose floating-point weights and buffers are the mean of the
    two models' (weight-space ensembling of the start and the fine-tuned weights)."""
    out = copy.deepcopy(trained)
    out.load_state_dict(mean_state([trained.state_dict(), start.state_dict()]))
    return out.eval()


def score_checks(root: Path, weights: list[Path]) -> None:
    """The label-aware held-out check and guard, as finetune() measures them, for the
    shipped weights and each saved ``labels-<minutes>-SEQ.pt``."""
    for w in weights:
        seq = w.stem.split("-", 2)[2]
        gt, _ = load_annotations(root, seq)
        video = open_video(frame_folder(root, seq))
        keyframes = {0: gt[0]}
        _, check, guard = _plan(video, keyframes, TrainConfig.finetune())
        base, ft = load_model(None, device="cpu"), load_model(w, device="cpu")
        seen, _ = choose_pseudo_keyframes(base, video, keyframes, guard, check.frames_used,
                                          LabelTerm().pseudo_keyframes)
        print(json.dumps(dict(seq=seq, check=[check.score(base), check.score(ft)],
                              guard=[guard.crispness(seen), guard.score(ft)])), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_DEV)
    ap.add_argument("--sequences", default="all")
    ap.add_argument("--mode", choices=("labels", "colours"), default="labels")
    ap.add_argument("--minutes", type=float, default=3.0, help="wall time, check included")
    ap.add_argument("--steps", type=int, default=0,
                    help="train this many steps instead of --minutes (comparable when the "
                         "CPU is shared)")
    ap.add_argument("--lr", type=float, default=0.0,
                    help="learning rate instead of TrainConfig.finetune's")
    ap.add_argument("--params", choices=("all", "norm"), default=None,
                    help="which parameters train (TrainConfig.params; default: its default)")
    ap.add_argument("--average", action="store_true",
                    help="also score the mean of the start and the fine-tuned weights")
    ap.add_argument("--painted", default="0",
                    help="painted frames as fractions of the video, e.g. 0,0.25,0.5,0.75 "
                         "(their ground truth; J&F still propagates frame 0's mask only)")
    ap.add_argument("--pseudo", type=int, default=None,
                    help="pseudo-keyframes (LabelTerm.pseudo_keyframes; default: its "
                         "default; 0: the painted frames only)")
    ap.add_argument("--out", type=Path, default=Path("runs/ftdev"))
    ap.add_argument("--tag", default="", help="label of this configuration in the rows")
    ap.add_argument("--save", action="store_true",
                    help="keep the fine-tuned weights as OUT/weights/<mode>-<minutes>-SEQ.pt")
    ap.add_argument("--no-check", action="store_true",
                    help="train without the held-out check (one run, its J&F scored; with "
                         "--save, --score-checks gives the checks' verdicts afterwards)")
    ap.add_argument("--no-score-kept", action="store_true",
                    help="do not re-train to score the weights the check rejected")
    ap.add_argument("--score-checks", nargs="+", type=Path, metavar="WEIGHTS",
                    help="only print the held-out check and the guard (label-aware mode) "
                         "of the shipped vs these saved weights (OUT/weights/*-SEQ.pt)")
    a = ap.parse_args()
    if not a.root.is_dir():
        sys.exit(f"error: no DAVIS dev folder at {a.root}; give --root.")
    if a.score_checks:
        score_checks(a.root, a.score_checks)
        return
    a.out.mkdir(parents=True, exist_ok=True)
    base_file = a.out / "base.json"
    for seq in resolve_sequences(a.root, a.sequences):
        gt, _ = load_annotations(a.root, seq)
        video = open_video(frame_folder(a.root, seq))
        model = load_model(None, device="cpu")
        base = json.loads(base_file.read_text()) if base_file.exists() else {}
        if seq not in base:
            print(f"{seq}: scoring the shipped weights", flush=True)
            base[seq] = jf(model, video, gt)
            write_json_atomic(base_file, base)
        painted = sorted({min(len(gt) - 1, round(float(f) * (len(gt) - 1)))
                          for f in a.painted.split(",")})
        keyframes = {t: gt[t] for t in painted} if a.mode == "labels" else None
        config = TrainConfig.finetune(**(dict(lr=a.lr) if a.lr else {}),
                                      **(dict(params=a.params) if a.params else {}))
        t0 = time.perf_counter()
        budget = dict(iters=a.steps) if a.steps else dict(minutes=a.minutes)
        term = LabelTerm(**({} if a.pseudo is None else dict(pseudo_keyframes=a.pseudo)))
        res = finetune(model, video, keyframes=keyframes, config=config, label_term=term,
                       check=not a.no_check, **budget)
        t_ft = time.perf_counter() - t0
        trained = res.model
        if res.kept_start and not a.no_score_kept:   # score what it learned (not kept)
            trained = finetune(model, video, iters=res.steps, keyframes=keyframes,
                               label_term=term,
                               config=config, check=False).model
        if a.save:
            (a.out / "weights").mkdir(exist_ok=True)
            save_checkpoint(a.out / "weights" / f"{a.mode}-{a.minutes:g}-{seq}.pt", trained)
        if res.kept_start and a.no_score_kept:      # not scored: the start weights' J&F
            ft = base[seq]
        else:
            ft = jf(trained, video, gt)
        b = base[seq]["JF"]
        row = dict(tag=a.tag, seq=seq, mode=a.mode, minutes=a.minutes, steps=res.steps,
                   pseudo=res.pseudo,
                   s_per_step=res.seconds_per_step, wall_s=t_ft, base=b, ft=ft["JF"],
                   ft_J=ft["J"], ft_F=ft["F"], delta_ft=ft["JF"] - b,
                   check=res.check, check_before=res.check_before,
                   check_after=res.check_after, guard_before=res.guard_before,
                   guard_after=res.guard_after, kept_start=res.kept_start,
                   final=b if res.kept_start else ft["JF"],
                   delta_final=0.0 if res.kept_start else ft["JF"] - b,
                   load=os.getloadavg()[0])
        if a.average:
            avg = jf(averaged(model, trained), video, gt)["JF"]
            row.update(avg=avg, delta_avg=avg - b)
        print(json.dumps(row), flush=True)
        with open(a.out / "rows.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in open(a.out / "rows.jsonl")]
    rows = [r for r in rows if r["mode"] == a.mode and r["minutes"] == a.minutes
            and r["tag"] == a.tag]
    if rows:
        print(f"{a.mode} {a.minutes:g} min, {len(rows)} sequences: shipped "
              f"{np.mean([r['base'] for r in rows]):.1f}, fine-tuned "
              f"{np.mean([r['ft'] for r in rows]):.1f}, kept (what the user gets) "
              f"{np.mean([r['final'] for r in rows]):.1f}; worst change "
              f"{min(r['delta_final'] for r in rows):+.1f}")


if __name__ == "__main__":
    main()
