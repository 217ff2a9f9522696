"""Device selection: ``auto`` picks CUDA, then MPS, then CPU."""
from __future__ import annotations

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
