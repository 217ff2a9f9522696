"""corrflow-napari: propagate masks and keypoints through video with CorrFlow."""
from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning (torch's intra-op pool): on a CPU shared
# with other work the default spinning made propagation several times slower (device.py).
# Read once, when torch first loads: this package imports torch only in its submodules.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

__all__ = ["load_model", "propagate", "propagate_labels", "track_points", "__version__"]


def __getattr__(name):  # lazy: importing the package must not import torch or Qt eagerly
    if name == "load_model":
        from .model import load_model
        return load_model
    if name == "propagate":
        from .propagation import propagate
        return propagate
    if name == "propagate_labels":
        from .propagation import propagate_labels
        return propagate_labels
    if name == "track_points":
        from .tracking import track_points
        return track_points
    raise AttributeError(name)
