"""Device selection: ``auto`` picks CUDA, then MPS, then CPU; the CPU's thread settings.

Threads on the CPU: torch's intra-op pool keeps its default (one thread per core), the
ffmpeg decoder runs one thread (``io.ffmpeg_source``), and the package sets
``OMP_WAIT_POLICY=PASSIVE`` before torch loads (``corrflow_napari/__init__.py``) unless the
user set it: idle OpenMP threads then sleep instead of spinning. With spinning (libgomp's
default) a thread waiting at the end of every parallel region burns the core that another
process, the decoder or the GUI thread needs, and the region waits for a descheduled
thread: on this project's shared 2-core CPU the Lab-colour path ran 3.1-4.2 s/frame with
the default and 0.49-0.50 s/frame passive (1 thread: 0.59-0.62), the learned encoder
5.0-6.4 s vs 2.8 s per 480p frame (benchmarks/bench_propagation.py has the busy-neighbour
row; numbers in the README).
"""
from __future__ import annotations

import os

import torch

from .errors import InputError


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``auto|cpu|cuda|cuda:N|mps`` to an available torch.device or raise InputError."""
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: CUDA is not available on this machine; "
                             "use --device auto (or cpu).")
        return torch.device(name)
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise InputError("--device mps: Apple MPS is not available on this machine; "
                             "use --device auto (or cpu).")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device {device!r}; use auto, cpu, cuda or mps.")


def cpu_threads() -> dict:
    """The CPU thread settings in effect: torch intra-op and inter-op threads, the OpenMP
    wait policy and spin count from the environment (None = the runtime's default)."""
    return {"torch_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT")}
