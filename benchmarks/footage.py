#!/usr/bin/env python
"""Speed on real footage (issue 16), the section ``footage`` of bench_propagation.py.

Every figure comes from a fresh child process (``python benchmarks/footage.py --child
...`` prints one JSON line) with the shipped weights (or the Lab path), default settings:
  * end to end on a 480p DAVIS sequence (JPEG folder), the 720p clip (mp4) and a 1080p
    clip made by upscaling its first frames (libx264, temporary): open, then decode ->
    working resolution -> propagation -> full-size labels -> indexed PNGs, as
    ``corrflow propagate`` does; frames/s over the propagation call (decode and PNG
    writing included; opening the video, a scan of the file, reported apart);
  * the old code path at 480p in the same run: the encoder's module forward
    (``fast_inference = False``) and libgomp's default spinning (``GOMP_SPINCOUNT=300000``
    instead of the package's ``OMP_WAIT_POLICY=PASSIVE``);
  * both again with one busy neighbour process (a pure-Python busy loop);
  * the encoder alone: GFLOP per 480p frame, GFLOP/s, and the fp32 matmul peak (best of
    2048 x 2048 sgemm) measured in the same process;
  * tracking s/frame (``track_points`` defaults) and fine-tuning s/step (``finetune`` on
    the bundled sample, as the widget runs it), measured as they are.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np  # (no torch here: the package must load first, see main)

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
DATA = REPO.parent / "shared" / "data"
CLIP_720 = DATA / "clips" / "bigbuckbunny.mp4"
OLD_ENV = {"GOMP_SPINCOUNT": "300000"}      # libgomp's default spin count
BURN = "while True:\n    pass\n"


# --------------------------------------------------------------------------- children
class Head:
    """The first ``n`` frames of a video, array-like (the engine only indexes frames)."""

    def __init__(self, video, n: int):
        self.video, self.n = video, min(n, len(video))
        self.shape = (self.n,) + tuple(video.shape[1:])
        self.dtype, self.ndim = video.dtype, 4

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, t):
        return self.video[t]


def first_mask(video_path: str, hw) -> np.ndarray:
    """The sequence's first annotation (DAVIS folder) or a centred box (clips)."""
    p = Path(video_path)
    ann = p.parents[2] / "Annotations" / "480p" / p.name / "00000.png" if p.is_dir() else None
    if ann is not None and ann.exists():
        from PIL import Image
        return (np.asarray(Image.open(ann)) > 0).astype(np.uint8)
    h, w = hw
    m = np.zeros((h, w), np.uint8)
    m[h // 3:2 * h // 3, w // 3:2 * w // 3] = 1
    return m


def child_propagate(video_path: str, frames: int, weights: str | None, old: bool,
                    max_size: int | None) -> dict:
    import torch

    from corrflow_napari.device import cpu_threads
    from corrflow_napari.io import open_video, write_indexed_png
    from corrflow_napari.model import load_model
    from corrflow_napari.propagation import PropagationSettings, propagate_labels
    from corrflow_napari.working_resolution import working_scale
    model = load_model(weights, device="cpu")
    if old:
        model.fast_inference = False
    t0 = time.perf_counter()
    video = open_video(video_path)
    open_s = time.perf_counter() - t0
    clip = Head(video, frames + 1)
    h, w = clip.shape[1:3]
    mask = first_mask(video_path, (h, w))
    settings = PropagationSettings() if max_size is None else PropagationSettings(
        max_size=max_size)
    scale, _ = working_scale(settings, h, w, {0: mask})
    out = Path(tempfile.mkdtemp(prefix="bench_png_"))
    stamps = []

    def save(t, lab):
        write_indexed_png(out / f"{t:05d}.png", lab)
        stamps.append(time.perf_counter())

    warm = Head(video, 2)                       # threads, allocator, oneDNN kernels
    propagate_labels(model, warm, {0: mask}, settings=settings)
    t0, c0 = time.perf_counter(), time.process_time()
    propagate_labels(model, clip, {0: mask}, settings=settings, on_frame=save)
    run_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    gaps = np.diff([t0] + stamps)[1:]
    n = len(stamps)
    return {"size": [w, h], "frames": n, "working_size": [round(w * scale), round(h * scale)],
            "open_s": open_s, "run_s": run_s, "fps": n / run_s, "s_per_frame": run_s / n,
            "steady_s_per_frame": float(np.median(gaps)) if len(gaps) else run_s / n,
            "cpu_s_per_frame": cpu_s / n, "pngs": len(list(out.glob("*.png"))),
            "old_path": old, "threads": cpu_threads(), "torch": torch.__version__}


def child_encoder(repeats: int, old: bool) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from corrflow_napari.device import cpu_threads
    from corrflow_napari.model import load_model
    model = load_model(device="cpu")
    if old:
        model.fast_inference = False
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 480, 854, 3),
                                                           dtype=np.uint8))
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model.encoder(x.permute(0, 3, 1, 2).float() / 255)
    model.encode(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.encode(x)
        times.append(time.perf_counter() - t0)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    mm = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        mm.append(time.perf_counter() - t0)
    gflop = fc.get_total_flops() / 1e9
    enc_s = statistics.median(times)
    return {"gflop": gflop, "s": enc_s, "gflops": gflop / enc_s,
            "matmul_peak_gflops": 2 * 2048 ** 3 / min(mm) / 1e9, "threads": cpu_threads()}


def child_track(video_path: str, frames: int) -> dict:
    from corrflow_napari.io import open_video
    from corrflow_napari.model import load_model
    from corrflow_napari.tracking import track_points
    model = load_model(device="cpu")
    clip = Head(open_video(video_path), frames + 1)
    h, w = clip.shape[1:3]
    pts = np.array([[0, h * fy, w * fx] for fy in (0.3, 0.5, 0.7) for fx in (0.3, 0.6)])
    track_points(model, Head(clip.video, 2), pts)
    t0 = time.perf_counter()
    track_points(model, clip, pts)
    return {"frames": clip.n - 1, "points": len(pts),
            "s_per_frame": (time.perf_counter() - t0) / (clip.n - 1)}


def child_finetune(steps: int) -> dict:
    from corrflow_napari.model import load_model
    from corrflow_napari.sample_data import load_sample
    from corrflow_napari.training import finetune
    frames, mask = load_sample()
    res = finetune(load_model(device="cpu"), frames, iters=steps, check=False)
    return {"steps": res.steps, "s_per_step": res.seconds_per_step,
            "frames": list(frames.shape)}


# --------------------------------------------------------------------------- parent
def run_child(args: list[str], env: dict | None = None, neighbour: bool = False,
              timeout: float = 3600) -> dict:
    """This file as a child process (``env`` added); with ``neighbour`` a busy-loop
    process runs beside it for the whole measurement."""
    burner = subprocess.Popen([sys.executable, "-c", BURN]) if neighbour else None
    try:
        res = subprocess.run([sys.executable, str(HERE)] + args, capture_output=True,
                             text=True, timeout=timeout, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        return {"error": " | ".join((res.stderr or res.stdout).strip().splitlines()[-2:])}
    return json.loads(lines[-1])


def make_1080p(frames: int, folder: Path) -> Path:
    """The 720p clip's first frames upscaled to 1920x1080 (bicubic, libx264 crf 16)."""
    import imageio_ffmpeg
    out = folder / "clip1080.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(CLIP_720),
                    "-frames:v", str(frames), "-vf", "scale=1920:1080:flags=bicubic",
                    "-c:v", "libx264", "-crf", "16", "-pix_fmt", "yuv420p", str(out)],
                   check=True)
    return out


KEYS = ("prop_480p", "prop_480p_old", "prop_720p", "prop_720p_native", "prop_1080p",
        "prop_480p_lab", "prop_720p_lab", "prop_480p_neighbour", "prop_480p_old_neighbour",
        "encoder", "encoder_old", "track", "finetune")


def empty_result() -> dict:
    """Every key of the section, None until measured (``--quick`` keeps them all)."""
    out = {k: None for k in KEYS}
    out.update(fps_720p=None, ratio_720p_vs_480p=None, speedup_480p_vs_old=None,
               speedup_480p_vs_old_neighbour=None, neighbour_slowdown=None,
               neighbour_slowdown_old=None, encoder_fraction_of_matmul_peak=None,
               track_vs_propagation=None, targets=None)
    return out


def measure(quick: bool, davis: Path, seq: str, log=print) -> dict:
    """Run every child, interleaving old and new paths; returns the section's dict."""
    n = 3 if quick else 20
    seq_dir = str(davis / "JPEGImages" / "480p" / seq)
    r = empty_result()
    tmp = Path(tempfile.mkdtemp(prefix="bench_1080_"))
    clip1080 = make_1080p(n + 1, tmp)

    def prop(key, path, weights=None, old=False, max_size=None, frames=n, neighbour=False):
        args = ["--child", "propagate", "--video", str(path), "--frames", str(frames)]
        args += ["--weights", weights] if weights else []
        args += ["--old"] if old else []
        args += ["--max-size", str(max_size)] if max_size is not None else []
        res = run_child(args, env=OLD_ENV if old else None, neighbour=neighbour)
        log(f"  {key}: {res.get('s_per_frame', res.get('error'))} s/frame")
        return res

    for _ in range(1 if quick else 2):          # new and old alternate: same machine load
        new, old = prop("prop_480p", seq_dir), prop("prop_480p_old", seq_dir, old=True)
        for key, v in (("prop_480p", new), ("prop_480p_old", old)):
            if "error" not in v and (r[key] is None or v["s_per_frame"] < r[key]["s_per_frame"]):
                r[key] = v
    r["prop_720p"] = prop("prop_720p", CLIP_720)
    r["prop_1080p"] = prop("prop_1080p", clip1080)
    r["prop_720p_native"] = prop("prop_720p_native", CLIP_720, max_size=0)
    r["prop_480p_lab"] = prop("prop_480p_lab", seq_dir, weights="lab")
    r["prop_720p_lab"] = prop("prop_720p_lab", CLIP_720, weights="lab")
    r["prop_480p_neighbour"] = prop("prop_480p_neighbour", seq_dir, neighbour=True)
    r["prop_480p_old_neighbour"] = prop("prop_480p_old_neighbour", seq_dir, old=True,
                                        neighbour=True)
    reps = "2" if quick else "5"
    r["encoder"] = run_child(["--child", "encoder", "--frames", reps])
    r["encoder_old"] = run_child(["--child", "encoder", "--frames", reps, "--old"],
                                 env=OLD_ENV)
    r["track"] = run_child(["--child", "track", "--video", seq_dir, "--frames", str(n)])
    r["finetune"] = run_child(["--child", "finetune", "--frames", "2" if quick else "5"])
    derive(r)
    return r


def _get(r, key, field="s_per_frame"):
    v = r.get(key)
    return None if not v or "error" in v else v.get(field)


def _ratio(a, b):
    return None if a is None or b is None or not b else a / b


def derive(r: dict) -> None:
    """Ratios and targets from the measured rows (None where a row is missing)."""
    p480, p720 = _get(r, "prop_480p"), _get(r, "prop_720p")
    r["fps_720p"] = _get(r, "prop_720p", "fps")
    r["ratio_720p_vs_480p"] = _ratio(p720, p480)
    r["speedup_480p_vs_old"] = _ratio(_get(r, "prop_480p_old"), p480)
    r["speedup_480p_vs_old_neighbour"] = _ratio(_get(r, "prop_480p_old_neighbour"),
                                                _get(r, "prop_480p_neighbour"))
    r["neighbour_slowdown"] = _ratio(_get(r, "prop_480p_neighbour"), p480)
    r["neighbour_slowdown_old"] = _ratio(_get(r, "prop_480p_old_neighbour"),
                                         _get(r, "prop_480p_old"))
    enc = r.get("encoder") or {}
    if "gflops" in enc:
        r["encoder_fraction_of_matmul_peak"] = enc["gflops"] / enc["matmul_peak_gflops"]
    r["track_vs_propagation"] = _ratio(_get(r, "track"), p480)

    def check(value, ok):
        return None if value is None else bool(ok(value))
    r["targets"] = {
        "720p end to end >= 3 frames/s": check(r["fps_720p"], lambda v: v >= 3),
        "720p frame <= 1.3 x 480p frame": check(r["ratio_720p_vs_480p"], lambda v: v <= 1.3),
        "480p >= 2 x faster than the old path": check(r["speedup_480p_vs_old"],
                                                       lambda v: v >= 2),
        "fine-tuning <= 1.5 s/step": check(_get(r, "finetune", "s_per_step"),
                                           lambda v: v <= 1.5),
        "tracking no slower than propagation": check(r["track_vs_propagation"],
                                                     lambda v: v <= 1.0)}


def rows(r: dict) -> list[list]:
    """Table rows: what, frame size, working size, s/frame, frames/s, CPU s/frame."""
    names = {"prop_480p": "480p DAVIS, default", "prop_480p_old": "480p DAVIS, old path",
             "prop_720p": "720p clip, default (max_size 480)",
             "prop_720p_native": "720p clip, --max-size 0 (native)",
             "prop_1080p": "1080p clip, default (max_size 480)",
             "prop_480p_lab": "480p DAVIS, Lab path", "prop_720p_lab": "720p clip, Lab path",
             "prop_480p_neighbour": "480p DAVIS, default, one busy neighbour",
             "prop_480p_old_neighbour": "480p DAVIS, old path, one busy neighbour"}
    out = []
    for key, what in names.items():
        v = r.get(key) or {"error": "not measured"}
        if "error" in v:
            out.append([what, None, None, None, None, v["error"][:60]])
            continue
        out.append([what, "x".join(map(str, v["size"])), "x".join(map(str, v["working_size"])),
                    v["s_per_frame"], v["fps"], v["cpu_s_per_frame"]])
    return out


def section(quick: bool, davis: Path, seq: str, device: str, skip: set, log, table) -> dict:
    """The section for bench_propagation.py: measurements, tables (``table(title, header,
    rows)``) and targets; every key, None where not measured (skipped, or a CUDA run:
    these figures are the CPU's)."""
    from corrflow_napari.device import cpu_threads
    r = empty_result()
    r["cpu_threads"] = cpu_threads()
    if "footage" in skip or device != "cpu":
        log("\nreal footage: not measured (" + ("skipped" if "footage" in skip else
                                                "a CPU measurement; run with --device cpu") + ")")
        return r
    log("\nreal footage (fresh processes, shipped weights, default settings; "
        f"{'3' if quick else '20'} frames per run):")
    r.update(measure(quick, davis, seq, log=log))
    table("End to end (decode -> working resolution -> propagation -> full-size PNGs); "
          "old path = module forward + libgomp's default spinning",
          ["what", "frame", "working", "s/frame", "frames/s", "CPU s/frame"], rows(r))
    enc, old = r.get("encoder") or {}, r.get("encoder_old") or {}
    table("Encoder alone (shipped weights, one 854x480 frame) against the fp32 matmul peak "
          "(2048^3 sgemm, best of 5, same process)",
          ["path", "GFLOP/frame", "s/frame", "GFLOP/s", "matmul peak GFLOP/s"],
          [[name, e.get("gflop"), e.get("s"), e.get("gflops"), e.get("matmul_peak_gflops")]
           for name, e in (("default", enc), ("old path", old))])
    table("Tracking and fine-tuning, as they are (shipped weights, defaults)",
          ["what", "value", "unit"],
          [["track_points, 6 points, 480p", (r.get("track") or {}).get("s_per_frame"),
            "s/frame"],
           ["finetune on the 320x180 sample", (r.get("finetune") or {}).get("s_per_step"),
            "s/step"]])
    table("Ratios (one run, same machine load) and targets",
          ["what", "value"],
          [[k, r[k]] for k in ("fps_720p", "ratio_720p_vs_480p", "speedup_480p_vs_old",
                               "speedup_480p_vs_old_neighbour", "neighbour_slowdown",
                               "neighbour_slowdown_old", "encoder_fraction_of_matmul_peak",
                               "track_vs_propagation")]
          + [[f"target: {k}", {True: "met", False: "NOT met", None: "-"}[v]]
             for k, v in r["targets"].items()])
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", required=True,
                    choices=["propagate", "encoder", "track", "finetune"])
    ap.add_argument("--video")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--old", action="store_true")
    ap.add_argument("--max-size", type=int, default=None)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import corrflow_napari  # noqa: F401  (first: sets the OpenMP wait policy before torch)
    if a.child == "propagate":
        res = child_propagate(a.video, a.frames, a.weights, a.old, a.max_size)
    elif a.child == "encoder":
        res = child_encoder(a.frames, a.old)
    elif a.child == "track":
        res = child_track(a.video, a.frames)
    else:
        res = child_finetune(a.frames)
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
