"""DAVIS semi-supervised evaluation: propagate each sequence's first-frame mask and
score J / F with the official protocol (first and last frames not scored)."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..propagation import PropagationSettings
from .davis_data import frame_folder, load_annotations
from .results import write_results

BASELINES = ("identity",)   # feature modes that need no model


def evaluate_davis_sequence(root, seq: str, features: str, weights, device: str,
                            settings: PropagationSettings, out_dir: str | os.PathLike | None,
                            threads: int | None = None,
                            progress: Callable[[int, int], None] | None = None) -> dict:
    """Propagate one sequence from frame 0 and score it. ``features``: corrflow|lab|identity.

    Returns :func:`corrflow_napari.metrics.evaluate_sequence`'s dict plus "s_per_frame"
    (seconds) and "n_frames"; writes ``out_dir/<seq>/00000.png ...`` when given.
    """
    import torch

    from ..io import open_video, write_indexed_png
    from ..metrics import evaluate_sequence
    from ..model import load_model
    from ..propagation import propagate_labels

    if threads:
        torch.set_num_threads(threads)
    gt, palette = load_annotations(root, seq)
    frames = open_video(frame_folder(root, seq))
    t0 = time.perf_counter()
    if features == "identity":
        pred = np.repeat(gt[:1], len(gt), axis=0)
    else:
        model = load_model("lab" if features == "lab" else weights, device=device)
        pred = propagate_labels(model, frames, {0: gt[0]}, progress=progress, settings=settings)
    seconds = time.perf_counter() - t0
    if len(pred) != len(gt):
        raise ValueError(f"{seq}: {len(frames)} frames but {len(gt)} annotations")
    result = evaluate_sequence(gt, pred)
    result["s_per_frame"] = seconds / len(gt)
    result["n_frames"] = len(gt)
    if out_dir is not None:
        seq_dir = Path(out_dir) / seq
        seq_dir.mkdir(parents=True, exist_ok=True)
        for t, lab in enumerate(pred):
            write_indexed_png(seq_dir / f"{t:05d}.png", lab, palette)
    return result


def _worker(kwargs: dict) -> tuple[str, dict]:
    """Process-pool entry: one sequence."""
    return kwargs["seq"], evaluate_davis_sequence(**kwargs)


def evaluate_davis(root, sequences: list[str], features: str = "corrflow", weights=None,
                   device: str = "auto", settings: PropagationSettings | None = None,
                   out_dir=None, jobs: int = 1,
                   log: Callable[[str], None] = print) -> dict[str, dict]:
    """Evaluate ``sequences``; ``jobs`` > 1 runs sequences in parallel processes (the
    CPU threads are split between them). Writes ``out_dir/results.json`` when given."""
    settings = settings or PropagationSettings()
    results: dict[str, dict] = {}
    common = dict(root=str(root), features=features, weights=weights, device=device,
                  settings=settings, out_dir=out_dir)
    if jobs <= 1:
        for seq in sequences:
            results[seq] = evaluate_davis_sequence(seq=seq, **common)
            log(f"{seq}: J {100 * results[seq]['J']:.1f}  F {100 * results[seq]['F']:.1f}  "
                f"({results[seq]['s_per_frame']:.2f} s/frame)")
    else:
        import multiprocessing as mp
        threads = max(1, (os.cpu_count() or 1) // jobs)
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            for seq, res in pool.map(_worker, [dict(seq=s, threads=threads, **common)
                                               for s in sequences]):
                results[seq] = res
                log(f"{seq}: J {100 * res['J']:.1f}  F {100 * res['F']:.1f}")
    results = {s: results[s] for s in sequences}
    if out_dir is not None:
        write_results(out_dir, {"features": features,
                                "weights": str(weights) if weights else None,
                                "settings": asdict(settings), "sequences": results})
    return results
