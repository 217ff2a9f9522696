"""Default propagation now against the code (and its shipped weights) of an earlier commit,
in one run: ``corrflow propagate`` on the same frames, each time a fresh process, the two
alternating, so both see the same machine load.

    python benchmarks/versus_commit.py 513e872 \\
        ../shared/data/davis2016-dev/JPEGImages/480p/libby --rounds 3

The earlier commit is checked out into a temporary git worktree and run with
``PYTHONPATH`` pointing at it (same Python environment). Times are whole commands, start-up
included (which makes the ratio conservative). Prints each run and the ratio of medians.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_propagate(tree: Path, frames: str, mask: str, extra: list[str]) -> float:
    """Seconds of one ``corrflow propagate`` of ``tree``'s code (output discarded)."""
    with tempfile.TemporaryDirectory(prefix="versus_") as out:
        cmd = [sys.executable, "-c", "import sys; from corrflow_napari.cli import main; "
               "sys.exit(main())", "propagate", frames, "--mask", mask, "--out", out,
               "--device", "cpu", *extra]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=tree, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("commit", help="the earlier commit")
    ap.add_argument("frames", help="a frame folder or video")
    ap.add_argument("--mask", default=None,
                    help="first-frame mask (default: the DAVIS annotation of the folder)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--args", default="", help="extra propagate flags for both, one string")
    a = ap.parse_args(argv)
    frames = Path(a.frames).resolve()
    mask = a.mask or str(frames.parents[2] / "Annotations" / frames.parent.name / frames.name
                         / "00000.png")
    n = len([p for p in frames.iterdir() if p.suffix.lower() in (".jpg", ".png")]) \
        if frames.is_dir() else None
    extra = a.args.split()
    with tempfile.TemporaryDirectory(prefix="versus_tree_") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old),
                        a.commit], check=True, capture_output=True)
        try:
            times = {"now": [], a.commit: []}
            for r in range(a.rounds):
                for name, tree in (("now", ROOT), (a.commit, old)):
                    s = run_propagate(tree, str(frames), str(Path(mask).resolve()), extra)
                    times[name].append(s)
                    per = f", {s / n:.3f} s/frame" if n else ""
                    print(f"round {r} {name}: {s:.1f} s{per}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                           check=False, capture_output=True)
    now, then = statistics.median(times["now"]), statistics.median(times[a.commit])
    print(f"median: now {now:.1f} s, {a.commit} {then:.1f} s: now is {then / now:.2f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
