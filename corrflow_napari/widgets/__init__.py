"""napari dock widgets (thin: they gather inputs and call the core in worker threads).

The widgets are loaded on first use, so that the Qt-free modules here
(:mod:`.layer_arrays`, :mod:`.labels_edit`) import without Qt.
"""
from __future__ import annotations

import importlib

_WIDGETS = {"PropagateWidget": ".propagate", "TrackWidget": ".track",
            "FinetuneWidget": ".finetune"}

__all__ = ["PropagateWidget", "TrackWidget", "FinetuneWidget"]


def __getattr__(name: str):
    if name in _WIDGETS:
        return getattr(importlib.import_module(_WIDGETS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
