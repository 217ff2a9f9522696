#!/usr/bin/env python
"""Propagation benchmark (issues 5, 16): encoder vs whole propagation, attention memory,
per-frame time against video length, peak RSS of a long run, training speed, and speed on
real footage (section ``footage``, benchmarks/footage.py: 480p/720p/1080p end to end at
the default working resolution, old vs new code path, one busy neighbour process, encoder
GFLOP/s against the fp32 matmul peak, tracking s/frame, fine-tuning s/step).

    python benchmarks/bench_propagation.py            # full run (long: ~1500 frames)
    python benchmarks/bench_propagation.py --quick    # short variant
    python benchmarks/bench_propagation.py --device cuda
    python benchmarks/bench_propagation.py --json-only
    python benchmarks/bench_propagation.py --skip ratio,scale,memory,lengths,train  # footage only

Prints human-readable tables and, as its last line, one JSON object. The model is the
paper's encoder (``CorrFlowModel(EncoderConfig())``, width 1.0) with random weights:
fine for timing, meaningless for accuracy. Frames are a real 480p DAVIS sequence; longer
videos repeat its frames forwards/backwards and are decoded lazily, one frame at a time.

Memory figures come from fresh subprocesses: the increase of ``ru_maxrss`` (peak resident
set) over the value measured just before the operation (inputs already allocated), or,
on CUDA, ``torch.cuda.max_memory_allocated`` over the same span. ``--quick`` keeps
every key of the full run (null where not measured).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# isort: off
import corrflow_napari  # noqa: E402,F401  (before torch: the package's OpenMP wait policy)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
# isort: on

DEFAULT_DAVIS = REPO.parent / "shared" / "data" / "davis2016-dev"
LOG_JSON_ONLY = False


def log(msg: str = "") -> None:
    if not LOG_JSON_ONLY:
        print(msg, flush=True)


# --------------------------------------------------------------------------- data
def sequence_paths(davis: Path, seq: str) -> tuple[list[Path], Path | None]:
    folder = davis / "JPEGImages" / "480p" / seq
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not frames:
        raise SystemExit(f"no frames in {folder}")
    ann = davis / "Annotations" / "480p" / seq / (frames[0].stem + ".png")
    return frames, (ann if ann.exists() else None)


def decode(path: Path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def pingpong(i: int, n: int) -> int:
    """Index into n source frames for frame i of a forwards/backwards repeated video."""
    if n == 1:
        return 0
    j = i % (2 * n - 2)
    return j if j < n else 2 * n - 2 - j


class LazyVideo:
    """(T, H, W, 3) uint8 video whose frame i is decoded on access from the sequence's
    JPEG ``pingpong(i)``: nothing but the current frame is held in memory."""

    def __init__(self, paths: list[Path], length: int | None = None):
        self.paths = paths
        self.length = len(paths) if length is None else int(length)
        h, w, _ = decode(paths[0]).shape
        self.shape = (self.length, h, w, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i):
        i = int(i)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(i)
        return decode(self.paths[pingpong(i, len(self.paths))])


def first_mask(ann: Path | None, shape) -> np.ndarray:
    if ann is None:   # no annotation: a centred box
        h, w = shape
        m = np.zeros((h, w), np.uint8)
        m[h // 4:3 * h // 4, w // 4:3 * w // 4] = 1
        return m
    from PIL import Image
    with Image.open(ann) as im:
        a = np.asarray(im)
    if a.ndim == 3:
        a = a[..., 0]
    return (a > 127).astype(np.uint8) if a.max() > 1 else a.astype(np.uint8)


# --------------------------------------------------------------------------- helpers
def make_model(device: str):
    from corrflow_napari.model.encoder import EncoderConfig
    from corrflow_napari.model.features import CorrFlowModel
    torch.manual_seed(0)
    return CorrFlowModel(EncoderConfig(width=1.0)).eval().to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def autocast(device: str, amp: str | None):
    if amp is None:
        return torch.autocast("cpu", enabled=False)
    return torch.autocast(device.split(":")[0], dtype={"bf16": torch.bfloat16,
                                                       "fp16": torch.float16}[amp])


def maxrss_mb() -> float:
    """Peak resident set size of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def _status_mb(field: str) -> float | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class PeakRSS:
    """Peak RSS above the current RSS over a ``with`` block: resets the kernel's
    high-water mark (``/proc/self/clear_refs``), then reads VmHWM; falls back to the
    ru_maxrss increase where that is not possible."""

    def __enter__(self):
        self.reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            pass
        self.base = _status_mb("VmRSS") if self.reset else maxrss_mb()
        return self

    def __exit__(self, *exc):
        peak = _status_mb("VmHWM") if self.reset else maxrss_mb()
        self.peak_mb = max(0.0, peak - self.base)
        self.method = "VmHWM after clear_refs" if self.reset else "ru_maxrss increase"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def run_child(args: list[str], timeout: float | None = None) -> dict:
    """Run this script in a fresh interpreter; its last stdout line is a JSON object."""
    cmd = [sys.executable, str(Path(__file__).resolve())] + args
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in res.stdout.strip().splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {res.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def mem_available_mb() -> float | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- attention
def naive_attention(query, refs, values, radius=6, temperature=1.0, topk=None):
    """Restricted attention done the obvious way: unfold every reference's features to a
    ``C x (2M+1)^2 x H x W`` tensor, take dot products with the query, mask out-of-frame
    window entries, (top-k,) softmax jointly over the R windows, and sum the equally
    unfolded values. Same result as ``restricted_attention``; memory O(C (2M+1)^2 H W)."""
    b, c, h, w = query.shape
    r_n, v = refs.shape[1], values.shape[2]
    win = 2 * radius + 1
    logits, vals = [], []
    ones = torch.ones(b, 1, h, w, dtype=query.dtype, device=query.device)
    inside = F.unfold(ones, win, padding=radius).view(b, win * win, h, w) > 0.5
    for r in range(r_n):
        unf = F.unfold(refs[:, r], win, padding=radius).view(b, c, win * win, h, w)
        logits.append((unf * query[:, :, None]).sum(1))                        # B,W2,H,W
        del unf
        vals.append(F.unfold(values[:, r], win, padding=radius).view(b, v, win * win, h, w))
    lg = torch.cat(logits, 1) / temperature                                     # B,R*W2,H,W
    allowed = inside.repeat(1, r_n, 1, 1)
    lg = lg.masked_fill(~allowed, -1e4)
    if topk is not None and topk < lg.shape[1]:
        kth = lg.topk(topk, dim=1).values[:, -1:]
        lg = lg.masked_fill(lg < kth, -1e4)
    wts = torch.softmax(lg, dim=1) * allowed
    return (wts[:, None] * torch.cat(vals, 2)).sum(2)                           # B,V,H,W


def attention_inputs(h: int, w: int, refs: int, device: str, c: int = 64, v: int = 2):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, c, h, w, generator=g)
    r = torch.randn(1, refs, c, h, w, generator=g)
    val = torch.rand(1, refs, v, h, w, generator=g)
    return q.to(device), r.to(device), val.to(device)


def child_attention(impl: str, h: int, w: int, refs: int, device: str, topk: int | None,
                    chunk: int | None) -> dict:
    from corrflow_napari.model.attention import full_attention, restricted_attention

    def run(q, r, val):
        if impl == "ours":
            return restricted_attention(q, r, val, radius=6, topk=topk, chunk_tiles=chunk)
        if impl == "naive":
            return naive_attention(q, r, val, radius=6, topk=topk)
        return full_attention(q, r, val)

    with torch.inference_mode():
        run(*attention_inputs(16, 16, refs, device))       # warm up (threads, allocator)
        q, r, val = attention_inputs(h, w, refs, device)
        sync(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with PeakRSS() as peak:
            t0 = time.perf_counter()
            out = run(q, r, val)
            sync(device)
            dt = time.perf_counter() - t0
        res = {"impl": impl, "seconds": dt, "out_shape": list(out.shape), "method": peak.method}
        if device.startswith("cuda"):
            res["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
            res["method"] = "torch.cuda.max_memory_allocated increase"
        else:
            res["peak_mb"] = peak.peak_mb
    return res


def check_naive_matches(device: str) -> float:
    from corrflow_napari.model.attention import restricted_attention
    q, r, val = attention_inputs(23, 37, 3, device, c=16, v=3)
    with torch.inference_mode():
        a = naive_attention(q, r, val, radius=6, topk=10)
        b = restricted_attention(q, r, val, radius=6, topk=10)
    return float((a - b).abs().max())


# --------------------------------------------------------------------------- encoder / propagation
def time_encoder(model, frames: list[np.ndarray], device: str, amp: str | None = None,
                 cpu_times: list | None = None) -> list[float]:
    """Wall seconds per frame of ``model.encode`` on decoded frames (and, into
    ``cpu_times``, process CPU seconds per frame)."""
    times = []
    with autocast(device, amp):
        for f in frames:
            x = torch.from_numpy(np.ascontiguousarray(f))[None]
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            model.encode(x)
            sync(device)
            times.append(time.perf_counter() - t0)
            if cpu_times is not None:
                cpu_times.append(time.process_time() - c0)
    return times


def time_propagation(model, video, mask, device: str, amp: str | None = None,
                     settings=None) -> dict:
    """Run ``propagate_labels`` from frame 0; per-frame times from the ``on_frame``
    timestamps (steady state) and total / frames (including set-up and frame 0's encode)."""
    from corrflow_napari.propagation import propagate_labels
    stamps, cpu = [], []

    def on_frame(t, lab):
        sync(device)
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())

    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    with autocast(device, amp):
        propagate_labels(model, video, {0: mask}, on_frame=on_frame, settings=settings)
    sync(device)
    total = time.perf_counter() - t0
    gaps = np.diff([t0] + stamps)
    steady = gaps[1:] if len(gaps) > 1 else gaps
    cgaps = np.diff([c0] + cpu)
    csteady = cgaps[1:] if len(cgaps) > 1 else cgaps
    return {"frames": len(stamps), "total_s": total, "per_frame_times": steady.tolist(),
            "median_s": float(np.median(steady)), "mean_s": total / max(1, len(stamps)),
            "cpu_median_s": float(np.median(csteady))}


def length_model(which: str, device: str):
    """The model of the length runs: "paper" (random weights), "lab" or a checkpoint path."""
    if which == "paper":
        return make_model(device)
    from corrflow_napari.model import load_model
    return load_model(which, device=device)


def child_length(davis: str, seq: str, length: int, device: str, which: str = "paper") -> dict:
    paths, ann = sequence_paths(Path(davis), seq)
    video = LazyVideo(paths, length)
    mask = first_mask(ann, video.shape[1:3])
    model = length_model(which, device)
    res = time_propagation(model, video, mask, device)
    times = res.pop("per_frame_times")
    n = min(100, max(1, len(times) // 4))
    res.update(first_median_s=float(np.median(times[:n])),
               last_median_s=float(np.median(times[-n:])), window=n, peak_rss_mb=maxrss_mb())
    if device.startswith("cuda"):
        res["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return res


# --------------------------------------------------------------------------- training
def training_status() -> tuple[bool, str]:
    """Whether corrflow_napari.training is committed (landed) in the repository."""
    try:
        out = subprocess.run(["git", "ls-files", "--error-unmatch", "corrflow_napari/training/"],
                             cwd=REPO, capture_output=True, text=True)
        if out.returncode != 0:
            return False, "corrflow_napari/training/ is not committed yet"
    except OSError:
        pass
    try:
        import corrflow_napari.training  # noqa: F401
    except Exception as e:   # noqa: BLE001
        return False, f"corrflow_napari.training does not import: {e}"
    return True, "ok"


def child_train(davis: str, seq: str, which: str, steps: int, device: str,
                warmup: int = 1) -> dict:
    from corrflow_napari.model.encoder import EncoderConfig
    from corrflow_napari.model.features import CorrFlowModel
    from corrflow_napari.training import TrainConfig, make_optimizer, train_step
    config = TrainConfig.finetune() if which == "finetune" else TrainConfig.paper()
    torch.manual_seed(0)
    model = CorrFlowModel(EncoderConfig(width=config.width)).to(device)
    model.centroids.copy_(torch.randn(16, 2) * 20)
    opt = make_optimizer(model, config)
    paths, _ = sequence_paths(Path(davis), seq)
    frames = [torch.from_numpy(decode(p)).permute(2, 0, 1).float() / 255 for p in paths[:9]]
    s, crop = 4, config.crop
    rng = np.random.default_rng(0)

    def clip():
        out = []
        for _ in range(config.batch):
            i = int(rng.integers(0, len(frames) - 2 * s))
            y = int(rng.integers(0, frames[0].shape[1] - crop + 1))
            x = int(rng.integers(0, frames[0].shape[2] - crop + 1))
            out.append(torch.stack([frames[i + k * s][:, y:y + crop, x:x + crop]
                                    for k in range(3)]))
        return torch.stack(out).to(device)

    gen = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps + warmup):     # the first ``warmup`` steps are not timed
        c = clip()
        sync(device)
        t0 = time.perf_counter()
        train_step(model, opt, c, config, step, generator=gen)
        sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    return {"which": which, "crop": crop, "batch": config.batch, "width": config.width,
            "warmup_steps": warmup, "step_s": times,
            "steps_per_s": 1.0 / statistics.median(times)}


# --------------------------------------------------------------------------- keys
FULL_RUN_KEYS = (
    "cpu_model", "encoder_s_per_frame", "propagate_s_per_frame", "propagate_total_s_per_frame",
    "ratio", "ratio_runs", "encoder_cpu_s_per_frame", "propagate_cpu_s_per_frame",
    "cpu_time_ratio", "decode_s_per_frame", "ratio_frames", "ratio_repeats",
    "propagate_s_per_frame_scale_0.5", "bf16_encoder_s_per_frame", "bf16_propagate_s_per_frame",
    "fp16_encoder_s_per_frame", "fp16_propagate_s_per_frame", "frames_per_s",
    "full_attention_required_mb", "attention_peak_mb", "naive_attention_peak_mb",
    "full_attention_peak_mb", "full_attention_note", "full_attention_fits",
    "attention_vs_naive", "s_per_frame_by_length", "length_runs", "peak_rss_mb_1000",
    "length_model", "train_steps_per_s", "train_runs", "train_note")


# --------------------------------------------------------------------------- main
def table(title: str, header: list[str], rows: list[list]) -> None:
    def fmt(x):
        if x is None:
            return "-"
        if isinstance(x, float):
            return f"{x:.4g}"
        return str(x)
    cells = [[fmt(x) for x in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    log(f"\n{title}")
    log("  ".join(h.ljust(wd) for h, wd in zip(header, widths)))
    log("  ".join("-" * wd for wd in widths))
    for r in cells:
        log("  ".join(c.ljust(wd) for c, wd in zip(r, widths)))


def main(argv=None) -> int:
    global LOG_JSON_ONLY
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short variant (~1-2 minutes)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--json-only", action="store_true", help="print only the JSON line")
    ap.add_argument("--davis", default=str(DEFAULT_DAVIS), help="DAVIS-2016 root")
    ap.add_argument("--seq", default=None, help="sequence (default: libby, else blackswan)")
    ap.add_argument("--frames", type=int, default=None, help="frames per encoder/propagation run")
    ap.add_argument("--repeats", type=int, default=None, help="runs per figure")
    ap.add_argument("--lengths", default=None, help="comma-separated video lengths")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--length-model", default="paper",
                    help="model of the length/RSS runs: paper (random weights, default), lab "
                         "(no encoder: isolates the engine's own growth) or a checkpoint path")
    ap.add_argument("--force-train", action="store_true",
                    help="time corrflow_napari.training even if it is not committed")
    ap.add_argument("--skip", default="",
                    help="comma list of: ratio,scale,memory,lengths,train,amp,footage")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_impl", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_len", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_which", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_refs", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--_warmup", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    davis = Path(args.davis)
    seq = args.seq
    if seq is None:
        seq = next((s for s in ("libby", "blackswan")
                    if (davis / "JPEGImages" / "480p" / s).is_dir()), "libby")
    device = args.device

    if args._child == "attention":
        from corrflow_napari.propagation import PropagationSettings
        st = PropagationSettings()
        print(json.dumps(child_attention(args._impl, 120, 214, args._refs, device, st.topk,
                                         st.chunk_tiles)))
        return 0
    if args._child == "length":
        print(json.dumps(child_length(str(davis), seq, args._len, device, args.length_model)))
        return 0
    if args._child == "train":
        print(json.dumps(child_train(str(davis), seq, args._which, args._len, device,
                                     warmup=args._warmup)))
        return 0

    LOG_JSON_ONLY = args.json_only
    started = time.perf_counter()
    quick = args.quick
    skip = set(filter(None, args.skip.split(",")))
    n_frames = args.frames or (8 if quick else 24)
    repeats = args.repeats or (1 if quick else 3)
    lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else \
        ([10, 20] if quick else [100, 400, 1000])
    train_steps = args.train_steps or (1 if quick else 3)
    child_common = ["--davis", str(davis), "--seq", seq, "--device", device]
    if args.threads:
        child_common += ["--threads", str(args.threads)]

    from corrflow_napari.propagation import PropagationSettings
    settings = PropagationSettings()
    paths, ann = sequence_paths(davis, seq)
    result: dict = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "device": device,
        "device_name": (torch.cuda.get_device_name(device) if device.startswith("cuda")
                        else platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(), "sequence": seq, "quick": quick,
        "loadavg_start": list(os.getloadavg()),
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
    }
    try:
        result["cpu_model"] = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    h, w, _ = decode(paths[0]).shape
    result["frame_size"] = [h, w]
    log(f"corrflow propagation benchmark - {result['date']}")
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device} "
        f"({result.get('cpu_model', result['device_name'])}), sequence {seq} "
        f"({len(paths)} frames, {w}x{h}), settings {result['settings']}")
    log("model: paper encoder (width 1.0), random weights (timing only)")

    model = make_model(device)

    # ---- encoder vs propagation, interleaved so that both see the same machine load
    if "ratio" not in skip:
        n = min(n_frames, len(paths))
        video = LazyVideo(paths, n + 1)               # frame 0 is the keyframe
        mask = first_mask(ann, (h, w))
        decoded = [decode(p) for p in paths[1:n + 1]]
        t0 = time.perf_counter()
        for p in paths[:n]:
            decode(p)
        decode_s = (time.perf_counter() - t0) / n
        time_encoder(model, decoded[:2], device)          # warm-up
        time_propagation(model, LazyVideo(paths, 3), mask, device)
        enc, prop, prop_total, ratios, cpu_ratios, enc_cpu, prop_cpu = [], [], [], [], [], [], []
        for rep in range(repeats):
            ec = []
            e = med(time_encoder(model, decoded, device, cpu_times=ec))
            p = time_propagation(model, video, mask, device, settings=settings)
            enc.append(e)
            prop.append(p["median_s"])
            prop_total.append(p["mean_s"])
            ratios.append(p["median_s"] / e)
            enc_cpu.append(med(ec))
            prop_cpu.append(p["cpu_median_s"])
            cpu_ratios.append(p["cpu_median_s"] / med(ec))
            log(f"  run {rep + 1}/{repeats}: encoder {e:.3f} s/frame, propagation "
                f"{p['median_s']:.3f} s/frame (incl. set-up {p['mean_s']:.3f}), ratio "
                f"{p['median_s'] / e:.3f} (CPU-time ratio {cpu_ratios[-1]:.3f})")
        result.update(encoder_s_per_frame=med(enc), propagate_s_per_frame=med(prop),
                      propagate_total_s_per_frame=med(prop_total), ratio=med(ratios),
                      ratio_runs=ratios, encoder_cpu_s_per_frame=med(enc_cpu),
                      propagate_cpu_s_per_frame=med(prop_cpu), cpu_time_ratio=med(cpu_ratios),
                      decode_s_per_frame=decode_s, ratio_frames=n, ratio_repeats=repeats)
        rows = [["encoder alone (paper, width 1.0)", med(enc), None, med(enc_cpu)],
                ["propagate_labels, default settings", med(prop), med(ratios), med(prop_cpu)],
                ["  incl. set-up (keyframe encode, seeds)", med(prop_total),
                 med(prop_total) / med(enc), None],
                ["JPEG decode (PIL)", decode_s, decode_s / med(enc), None]]
        if "scale" not in skip:
            from dataclasses import replace
            for sc in (0.5,):
                p = time_propagation(model, video, mask, device,
                                     settings=replace(settings, scale=sc))
                result[f"propagate_s_per_frame_scale_{sc}"] = p["median_s"]
                rows.append([f"propagate_labels, --scale {sc}", p["median_s"],
                             p["median_s"] / med(enc), p["cpu_median_s"]])
        if device.startswith("cuda") and "amp" not in skip:
            for amp in ("bf16", "fp16"):
                try:
                    e = med(time_encoder(model, decoded, device, amp))
                    p = time_propagation(model, video, mask, device, amp, settings=settings)
                    result[f"{amp}_encoder_s_per_frame"] = e
                    result[f"{amp}_propagate_s_per_frame"] = p["median_s"]
                    rows.append([f"encoder, autocast {amp}", e, None, None])
                    rows.append([f"propagate_labels, autocast {amp}", p["median_s"],
                                 p["median_s"] / e, None])
                except Exception as ex:   # noqa: BLE001
                    result[f"{amp}_error"] = str(ex)
            result["frames_per_s"] = 1.0 / med(prop)
        table(f"Per-frame time, {n} frames of {seq} at {w}x{h}, median of {repeats} run(s)",
              ["what", "s/frame", "x encoder", "CPU s/frame"], rows)

    # ---- attention memory, one 480p frame pair, fresh subprocess each
    if "memory" not in skip:
        fh, fw = -(-h // 4), -(-w // 4)
        log(f"\nattention memory: one {w}x{h} frame pair = {fw}x{fh} feature maps, 64 channels"
            f" (naive vs ours max abs difference on a small input: "
            f"{check_naive_matches('cpu'):.2g})")
        mem = {}
        for impl in ("ours", "naive", "full"):
            if impl == "full":
                need_mb = 2 * (fh * fw) ** 2 * 4 / 2 ** 20          # logits + softmax
                result["full_attention_required_mb"] = need_mb
                avail = (mem_available_mb() if not device.startswith("cuda") else
                         torch.cuda.mem_get_info(device)[0] / 2 ** 20)
                if avail is not None and avail < 1.3 * need_mb + 1024:
                    mem[impl] = {"error": "did not fit", "peak_mb": None}
                    continue
            runs = [run_child(["--_child", "attention", "--_impl", impl] + child_common,
                              timeout=600) for _ in range(1 if impl == "full" or quick else 3)]
            good = [r for r in runs if "error" not in r]
            mem[impl] = ({"peak_mb": med([r["peak_mb"] for r in good]),
                          "seconds": med([r["seconds"] for r in good])} if good
                         else {"error": runs[0]["error"], "peak_mb": None})
        result["attention_peak_mb"] = mem["ours"]["peak_mb"]
        result["naive_attention_peak_mb"] = mem["naive"]["peak_mb"]
        result["full_attention_peak_mb"] = mem["full"]["peak_mb"]
        if mem["full"]["peak_mb"] is None:
            result["full_attention_note"] = (f"did not fit: needs ~{need_mb:.0f} MB "
                                             f"({mem['full'].get('error')})")
            result["full_attention_peak_mb"] = need_mb
            result["full_attention_fits"] = False
        else:
            result["full_attention_fits"] = True
        if result["attention_peak_mb"] and result["naive_attention_peak_mb"]:
            result["attention_vs_naive"] = (result["attention_peak_mb"]
                                            / result["naive_attention_peak_mb"])
        table("Attention peak memory (MB above the inputs), one 480p frame pair, 1 reference",
              ["implementation", "peak MB", "seconds", "note"],
              [["ours (restricted_attention, tiles, top-k, chunks)", mem["ours"]["peak_mb"],
                mem["ours"].get("seconds"), ""],
               ["naive (unfold C x 169 x H x W)", mem["naive"]["peak_mb"],
                mem["naive"].get("seconds"), mem["naive"].get("error", "")],
               ["full (all pairs)", result["full_attention_peak_mb"], mem["full"].get("seconds"),
                result.get("full_attention_note", "measured")]])

    # ---- per-frame time against length; peak RSS
    if "lengths" not in skip:
        by_len, rows = {}, []
        for n in lengths:
            r = run_child(["--_child", "length", "--_len", str(n),
                           "--length-model", args.length_model] + child_common)
            if "error" in r:
                by_len[str(n)] = None
                rows.append([n, None, None, None, None, None, r["error"]])
                continue
            by_len[str(n)] = r["median_s"]
            rows.append([n, r["median_s"], r["mean_s"], r["first_median_s"], r["last_median_s"],
                         r["peak_rss_mb"], f"{r['total_s']:.0f} s total"])
            result.setdefault("length_runs", {})[str(n)] = r
        result["s_per_frame_by_length"] = by_len
        longest = str(max(lengths))
        result["peak_rss_mb_1000" if 1000 in lengths else f"peak_rss_mb_{longest}"] = (
            result.get("length_runs", {}).get(longest, {}).get("peak_rss_mb"))
        if 1000 not in lengths:
            result["peak_rss_mb_1000"] = None
        result["length_model"] = args.length_model
        table(f"Per-frame time against video length, model {args.length_model} (one fresh "
              "process per length; median of "
              "the per-frame times, first/last = median of the first/last 100 frames)",
              ["frames", "median s/frame", "mean s/frame", "first", "last", "peak RSS MB", ""],
              rows)

    # ---- training speed
    if "train" not in skip:
        landed, why = training_status()
        if landed or args.force_train:
            tr = {}
            for which in ("finetune", "paper"):
                warm = 0 if quick and which == "paper" else 1
                r = run_child(["--_child", "train", "--_which", which, "--_len",
                               str(train_steps), "--_warmup", str(warm)] + child_common)
                tr[which] = r
            result["train_steps_per_s"] = {k: v.get("steps_per_s") for k, v in tr.items()}
            result["train_runs"] = tr
            if not landed:
                result["train_note"] = f"measured with --force-train ({why})"
            table(f"Training steps/s (median of {train_steps} step(s); quick: no warm-up for "
                  "the paper settings)",
                  ["settings", "crop", "batch", "width", "steps/s", "s/step"],
                  [[k, v.get("crop"), v.get("batch"), v.get("width"), v.get("steps_per_s"),
                    med(v.get("step_s", [])) if "error" not in v else v["error"]]
                   for k, v in tr.items()])
        else:
            result["train_steps_per_s"] = None
            result["train_note"] = why
            log(f"\ntraining: not measured ({why})")

    # ---- speed on real footage (issue 16): fresh child processes, shipped weights, CPU
    import footage
    result["footage"] = footage.section(quick, davis, seq, device, skip, log, table)
    for key in FULL_RUN_KEYS:            # --quick keeps every key of the full run
        result.setdefault(key, None)
    result["loadavg_end"] = list(os.getloadavg())
    result["wall_s"] = time.perf_counter() - started
    log(f"\nload average (1, 5, 15 min) at start {result['loadavg_start']}, at end "
        f"{result['loadavg_end']} on {os.cpu_count()} CPUs; took {result['wall_s']:.0f} s")
    log("")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
