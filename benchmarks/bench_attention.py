#!/usr/bin/env python
"""Attention cost per frame, and against an earlier version of the code in the same run.

    python benchmarks/bench_attention.py                  # this checkout only
    python benchmarks/bench_attention.py --old 93885a5    # also attention.py of that commit

One "frame" is what propagation does per frame besides encoding: tile one new reference
(both affinities of the shipped weights: learned and Lab colour) and attend with 5
references (keyframe, moved keyframe, 3 recent frames), top-10. Features of the first
frames of a DAVIS sequence (default cows) are encoded once and shared; the values are
those frames' ground-truth masks as label probabilities (background, object). This
checkout runs twice: skipping the tiles whose windows hold only background (as
propagation does) and computing every tile. With ``--old`` that version runs too. All
run interleaved, ``--repeats`` times each; the ratios of the medians are printed with the
largest difference between soft labels (exact ties between Lab-colour logits may be
picked differently). Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

DEFAULT_DAVIS = REPO.parent / "shared" / "data" / "davis2016-dev"


def attention_at(rev: str):
    """``corrflow_napari/model/attention.py`` of git revision ``rev``, imported as a module."""
    src = subprocess.run(["git", "-C", str(REPO), "show",
                          f"{rev}:corrflow_napari/model/attention.py"],
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"attention_{rev}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"attention_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--davis", default=str(DEFAULT_DAVIS), help="DAVIS-2016 root")
    ap.add_argument("--seq", default="cows")
    ap.add_argument("--old", default=None, help="git revision to compare with")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (Path(args.davis) / "JPEGImages" / "480p" / args.seq).is_dir():
        print(f"no DAVIS sequence {args.seq} under {args.davis}; pass --davis.")
        return 2

    from corrflow_napari.evaluation import load_sequence_prefix
    from corrflow_napari.model import attention, load_model
    from corrflow_napari.propagation import downsample_probs

    video, gt = load_sequence_prefix(Path(args.davis), args.seq, 6)
    model = load_model(None, device="cpu")
    with torch.inference_mode():
        feats = [model.encode(video[i:i + 1])[0] for i in range(6)]
    groups = model.affinity_groups()
    hw = tuple(feats[0].shape[-2:])
    values = torch.stack([downsample_probs(torch.stack([torch.from_numpy(m == 0),
                                                        torch.from_numpy(m > 0)]), hw)
                          for m in gt[:5]])[None]                          # 1, 5, 2, h, w

    def frame_fn(att, skip: bool = False):
        extra = {"skip_empty": True} if skip else {}
        def tiled(f):
            return [att.prepare_reference(f[None, g.start:g.stop], radius=6, metric=g.metric)
                    for g in groups]
        refs = [tiled(feats[i]) for i in range(5)]

        def frame():
            with torch.inference_mode():
                tiled(feats[4])
                return sum(g.weight * att.attend(feats[5][None, g.start:g.stop],
                                                 [r[i] for r in refs], values,
                                                 temperature=g.temperature, topk=10,
                                                 chunk_tiles=128, **extra)
                           for i, g in enumerate(groups))
        return frame

    runs = {"this checkout": frame_fn(attention, skip=True),
            "this checkout, every tile": frame_fn(attention)}
    if args.old:
        runs[f"old ({args.old})"] = frame_fn(attention_at(args.old))
    outs = {name: fn() for name, fn in runs.items()}            # warm-up, and the outputs
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    h, w = feats[0].shape[-2:]
    print(f"DAVIS {args.seq}, features {h}x{w}, {len(groups)} affinities, 5 references, "
          f"top-10, torch threads {torch.get_num_threads()}, {args.repeats} repeats")
    result = {"benchmark": "attention_per_frame", "seq": args.seq,
              "threads": torch.get_num_threads()}
    med = {}
    for name, ts in times.items():
        med[name] = sorted(ts)[len(ts) // 2]
        print(f"{name}: median {med[name]:.3f} s per frame (min {min(ts):.3f})")
    result["median_s"] = round(med["this checkout"], 4)
    every = "this checkout, every tile"
    diff = (outs[every] - outs["this checkout"]).abs()
    print(f"every tile / skipping: {med[every] / med['this checkout']:.2f}x; max |difference| "
          f"{float(diff.max()):.3g}")
    result.update(every_tile_median_s=round(med[every], 4),
                  skip_speedup=round(med[every] / med["this checkout"], 3))
    if args.old:
        old = f"old ({args.old})"
        diff = (outs[old] - outs["this checkout"]).abs()
        ratio = med[old] / med["this checkout"]
        print(f"old / this: {ratio:.2f}x; max |difference| {float(diff.max()):.3g}, "
              f"cells differing > 1e-4: {float((diff > 1e-4).float().mean()):.4%}")
        result.update(old=args.old, old_median_s=round(med[old], 4), speedup=round(ratio, 3),
                      max_abs_diff=float(diff.max()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
