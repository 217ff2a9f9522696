"""The dev check: is a checkpoint better than the shipped weights, beyond training noise?

Runs the whole DAVIS-2016 dev evaluation (8 sequences, full length, the official
protocol: first-frame mask propagated, first and last frames not scored) for a candidate
checkpoint and for a reference (the shipped weights by default), reusing earlier results
of the same file (keyed by its SHA-256), and prints per-sequence J&F, the difference of the
means and the seed-to-seed spread recorded in ``docs/dev-check-spread.json`` (the dev-mean
difference between two training runs that differ only in their seed), with a verdict.

    python scripts/dev_check.py runs/gpu/last.pt                     # vs the shipped weights
    python scripts/dev_check.py runs/a.pt --reference lab
    python scripts/dev_check.py --measure-spread runs/seed0.pt runs/seed1.pt
    python scripts/dev_check.py runs/gpu/last.pt --alone   # + learned alone vs Lab colour

With ``--jobs 2`` (default) the 542 frames take about 10 minutes on an idle 2-core CPU
with the shipped half-width encoder.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from corrflow_napari.evaluation import evaluate_davis, resolve_sequences
from corrflow_napari.io import write_json_atomic
from corrflow_napari.model import SHIPPED_WEIGHTS, InferenceSettings
from corrflow_napari.model.checkpoint import atomic_torch_save, read_checkpoint
from corrflow_napari.propagation import PropagationSettings

ROOT = Path(__file__).resolve().parents[1]
# the learned embedding alone: no Lab-colour mixture, its top-10 matches averaged (README
# "The learned embedding alone, and its softmax temperature")
ALONE = {"lab_mix": 0.0, "temperature": 1.0}
SPREAD_FILE = ROOT / "docs" / "dev-check-spread.json"
DEFAULT_DEV = ROOT.parent / "shared" / "data" / "davis2016-dev"


def _key(weights: str) -> str:
    """The file's SHA-256 (or "lab"/"identity") and the propagation and inference defaults
    it runs with: a result measured under other defaults (e.g. another window, or a
    setting a file does not store) is not reused."""
    settings = json.dumps([asdict(PropagationSettings()), asdict(InferenceSettings())],
                          sort_keys=True, default=str)
    tag = hashlib.sha256(settings.encode()).hexdigest()[:8]
    if weights in ("lab", "identity"):
        return f"{weights}-{tag}"
    return f"{_file_hash(weights)}-{tag}"


def _file_hash(path: str) -> str:
    """The first 16 hex digits of the file's SHA-256."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def scores(weights: str, root: Path, cache: Path, jobs: int) -> dict[str, float]:
    """{sequence: J&F in %} for ``weights`` ("lab", "identity" or a checkpoint path)."""
    out = cache / _key(weights)
    done = out / "results.json"
    if not done.exists():
        features = weights if weights in ("lab", "identity") else "corrflow"
        evaluate_davis(root, resolve_sequences(root, "all"), features=features,
                       weights=None if features != "corrflow" else weights, out_dir=out,
                       jobs=jobs, log=lambda m: print(m, file=sys.stderr))
    seqs = json.loads(done.read_text())["sequences"]
    return {s: 100 * (r["J"] + r["F"]) / 2 for s, r in seqs.items()}


def alone_copy(weights: str, cache: Path) -> Path:
    """A copy of checkpoint ``weights`` whose inference settings read the learned embedding
    alone (``ALONE``), written once into ``cache`` (named by the file's hash)."""
    path = cache / f"{_file_hash(weights)}-alone.pt"
    if not path.exists():
        obj = read_checkpoint(weights)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save({**obj, "inference": {**obj.get("inference", {}), **ALONE}}, path)
    return path


def alone_vs_lab(weights: str, root: Path, cache: Path, jobs: int) -> tuple[float, float]:
    """(dev mean of the learned embedding alone, of Lab colour), printed as one line."""
    copy = str(alone_copy(weights, cache))
    alone, lab = (float(np.mean(list(scores(w, root, cache, jobs).values())))
                  for w in (copy, "lab"))
    print(f"learned alone ({', '.join(f'{k}={v:g}' for k, v in ALONE.items())}): {alone:.1f} "
          f"vs Lab colour {lab:.1f} ({alone - lab:+.1f})")
    return alone, lab


def read_spread() -> float | None:
    if SPREAD_FILE.exists():
        return float(json.loads(SPREAD_FILE.read_text())["spread"])
    return None


def compare(candidate: str, reference: str, root: Path, cache: Path, jobs: int) -> dict:
    ref, cand = scores(reference, root, cache, jobs), scores(candidate, root, cache, jobs)
    print(f"{'sequence':<16}{'reference':>10}{'candidate':>10}{'delta':>8}")
    for s in ref:
        print(f"{s:<16}{ref[s]:>10.1f}{cand[s]:>10.1f}{cand[s] - ref[s]:>+8.1f}")
    m_ref, m_cand = float(np.mean(list(ref.values()))), float(np.mean(list(cand.values())))
    spread = read_spread()
    print(f"{'mean':<16}{m_ref:>10.1f}{m_cand:>10.1f}{m_cand - m_ref:>+8.1f}")
    if spread is None:
        verdict = "seed-to-seed spread not measured yet (--measure-spread): no verdict"
    elif m_cand - m_ref > spread:
        verdict = f"better by more than the seed spread ({spread:.1f}): replace the reference"
    else:
        verdict = f"not better beyond the seed spread ({spread:.1f}): keep the reference"
    print(verdict)
    return {"reference": m_ref, "candidate": m_cand, "spread": spread, "verdict": verdict}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("candidate", nargs="?", help="checkpoint to check")
    p.add_argument("--reference", default=str(SHIPPED_WEIGHTS),
                   help="checkpoint, 'lab' or 'identity'")
    p.add_argument("--root", type=Path, default=DEFAULT_DEV, help="DAVIS-2016 dev folder")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "devcheck",
                   help="results per checkpoint hash (reused)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--measure-spread", nargs=2, metavar=("SEED_A", "SEED_B"),
                   help="two checkpoints trained identically but for the seed: record the "
                        "difference of their dev means as the spread")
    p.add_argument("--alone", action="store_true",
                   help="also score the candidate's learned embedding alone against Lab colour")
    a = p.parse_args(argv)
    if a.measure_spread:
        sa, sb = (scores(w, a.root, a.cache, a.jobs) for w in a.measure_spread)
        diffs = {s: sb[s] - sa[s] for s in sa}
        spread = abs(float(np.mean(list(sb.values())) - np.mean(list(sa.values()))))
        write_json_atomic(SPREAD_FILE, {"spread": round(spread, 2), "checkpoints":
                                        [str(w) for w in a.measure_spread],
                                        "per_sequence_difference":
                                        {s: round(d, 2) for s, d in diffs.items()}})
        print(f"seed-to-seed spread of the dev mean: {spread:.2f} J&F -> {SPREAD_FILE}")
        return 0
    if not a.candidate:
        p.error("give a candidate checkpoint (or --measure-spread A B)")
    compare(a.candidate, a.reference, a.root, a.cache, a.jobs)
    if a.alone:
        alone_vs_lab(a.candidate, a.root, a.cache, a.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
