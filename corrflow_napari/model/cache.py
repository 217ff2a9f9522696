"""The shells' model choice: named weights, a one-model cache, and the weights shared
between the napari widgets after "Use for propagation". Qt-free.

A weights choice is a string: ``"shipped"`` (the installed CorrFlow weights), ``"lab"``
(the Lab-colour baseline, no learning), ``"scratch"`` (an untrained model, for fine-tuning)
or the path of a checkpoint file.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from pathlib import Path

LAB = "lab"
SHIPPED = "shipped"
SCRATCH = "scratch"

_lock = threading.Lock()
_cache: dict = {}


def shipped_available() -> bool:
    """Whether the shipped weights are installed."""
    from . import SHIPPED_WEIGHTS
    return Path(SHIPPED_WEIGHTS).exists()


def get_model(weights: str, device: str = "auto", fresh: bool = False):
    """The feature extractor for a weights choice, in eval mode on ``device`` (thread-safe;
    called from worker threads).

    Models are cached by (weights, device, file time); one model is kept. ``fresh`` gives
    a private copy (an untrained model is new every time).
    """
    from ..device import pick_device
    from . import SHIPPED_WEIGHTS, load_model
    from .features import CorrFlowModel
    if weights == SCRATCH:
        return CorrFlowModel().to(pick_device(device)).eval()
    spec = None if weights == SHIPPED else weights
    path = SHIPPED_WEIGHTS if spec is None else (None if spec == LAB else Path(spec))
    stamp = path.stat().st_mtime_ns if path is not None and path.exists() else None
    key = (str(weights), str(device), stamp)
    with _lock:
        model = None if fresh else _cache.get(key)
        if model is None:
            model = load_model(spec, device=device)
            if path is not None:
                model.weights_path = Path(path).resolve()
            if not fresh:
                _cache.clear()          # keep one model in memory
                _cache[key] = model
    return model


def describe_weights(weights: str) -> str:
    """Words for a weights choice, e.g. ``"Lab-colour baseline"``."""
    if weights == SHIPPED:
        return "shipped CorrFlow weights"
    if weights == LAB:
        return "Lab-colour baseline"
    if weights == SCRATCH:
        return "an untrained model"
    return f"weights {Path(weights).name}"


class SharedWeights:
    """The checkpoint chosen with "Use for propagation", followed by the weight pickers of
    the Propagate and Track widgets.

    A follower is a callable ``f(path)``; bound methods are held weakly. A follower that
    returns ``False`` (e.g. its widget was deleted) is dropped.
    """

    def __init__(self):
        self.path: str | None = None
        self._followers: list = []

    def follow(self, callback: Callable[[str], object]) -> None:
        """Call ``callback(path)`` now (when a checkpoint was chosen and still exists) and
        after every :meth:`use`."""
        ref = (weakref.WeakMethod(callback) if hasattr(callback, "__self__")
               else (lambda: callback))
        self._followers.append(ref)
        if self.path is not None and Path(self.path).exists():
            callback(self.path)

    def use(self, path) -> None:
        """Make ``path`` the shared checkpoint and tell every follower."""
        self.path = str(Path(path).resolve())
        alive = []
        for ref in self._followers:
            callback = ref()
            if callback is not None and callback(self.path) is not False:
                alive.append(ref)
        self._followers = alive


#: the one registry the widgets share
shared_weights = SharedWeights()
