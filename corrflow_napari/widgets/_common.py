"""Small pieces shared by the widgets: layer pickers, the weights picker, the shared
"weights to use" state, model loading (cached) and the worker-thread relay.

Nothing here knows the algorithm; it only gathers inputs for the core.
"""
from __future__ import annotations

import hashlib
import threading
import weakref
from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")
LAB = "lab"
SHIPPED = "shipped"
SCRATCH = "scratch"


# --------------------------------------------------------------------------- layer pickers


class LayerCombo(QComboBox):
    """A combo box listing the viewer's layers of one type, kept in sync with the viewer."""

    def __init__(self, viewer, layer_type, parent=None):
        super().__init__(parent)
        self.viewer, self.layer_type = viewer, layer_type
        self._layers: list = []
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._safe_refresh)
        viewer.layers.events.moved.connect(self._safe_refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self._safe_refresh)
        self.refresh()

    def _on_inserted(self, event=None):
        layer = getattr(event, "value", None)
        if layer is not None:
            layer.events.name.connect(self._safe_refresh)
        self._safe_refresh()
        if isinstance(layer, self.layer_type):   # a new layer of our type: pick it
            self._safe(lambda: self.set_layer(layer))

    def _safe(self, fn):
        try:
            fn()
        except RuntimeError:   # the Qt widget was deleted (viewer closing)
            pass

    def _safe_refresh(self, event=None):
        self._safe(self.refresh)

    def refresh(self) -> None:
        current = self.layer()
        layers = [ly for ly in self.viewer.layers if isinstance(ly, self.layer_type)]
        self.blockSignals(True)
        self.clear()
        self._layers = layers
        for ly in layers:
            self.addItem(ly.name)
        if current in layers:
            self.setCurrentIndex(layers.index(current))
        elif layers:
            self.setCurrentIndex(len(layers) - 1)
        self.blockSignals(False)
        if current is not self.layer():
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self):
        i = self.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def set_layer(self, layer) -> None:
        if layer in self._layers:
            self.setCurrentIndex(self._layers.index(layer))


def video_frames(layer) -> object:
    """The (T, H, W, 3) uint8 frames of an Image layer, as the core expects them.

    RGB(A) uint8 layers (and the reader's lazy videos) are used as they are (alpha
    dropped lazily); grey or other-dtype stacks are mapped to uint8 through the layer's
    contrast limits (what the user sees) and repeated to 3 channels, one frame at a time.
    """
    if layer is None:
        raise InputError("no video: open a video (File > Open) or the sample "
                         "(File > Open Sample > corrflow-napari) and pick its Image layer.")
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    if layer.rgb:
        if data.ndim != 4:
            raise InputError(f"Image layer '{layer.name}' is a single RGB picture, not a "
                             "video; open a video or a stack of frames.")
        if data.shape[-1] == 3 and np.dtype(data.dtype) == np.uint8:
            return data
    elif data.ndim != 3:
        raise InputError(f"Image layer '{layer.name}' has shape {tuple(data.shape)}; a video "
                         "must be (frames, height, width) or (frames, height, width, 3).")
    return _RGBView(data, layer.contrast_limits, rgb=bool(layer.rgb))


class _RGBView:
    """Lazy (T, H, W, 3) uint8 view of a grey / RGBA / non-uint8 stack."""

    def __init__(self, data, limits, rgb: bool):
        self.data, self.rgb = data, rgb
        self.lo, self.hi = float(limits[0]), float(limits[1])
        self.shape = tuple(data.shape[:3]) + (3,)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4

    def __len__(self) -> int:
        return self.shape[0]

    def _convert(self, f: np.ndarray) -> np.ndarray:
        f = np.asarray(f)
        if self.rgb:
            f = f[..., :3]
        if f.dtype != np.uint8 or (self.lo, self.hi) != (0.0, 255.0):
            scale = 255.0 / max(self.hi - self.lo, 1e-12)
            f = np.clip((f.astype(np.float32) - self.lo) * scale, 0, 255).round().astype(np.uint8)
        if not self.rgb:
            f = np.repeat(f[..., None], 3, axis=-1)
        return f

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._convert(self.data[index])
        return np.asarray(self)[index]

    def __array__(self, dtype=None, copy=None):
        out = np.stack([self._convert(self.data[t]) for t in range(self.shape[0])])
        return out if dtype is None else out.astype(dtype)


def current_frame(viewer, layer) -> int:
    """Index (along the layer's first axis) of the frame the viewer shows."""
    pos = layer.world_to_data(viewer.dims.point)
    t = int(round(float(pos[0])))
    return min(max(t, 0), layer.data.shape[0] - 1)


def fingerprint(frame) -> str:
    f = np.ascontiguousarray(frame)
    return f"{f.dtype.str}:" + hashlib.blake2b(f.tobytes(), digest_size=8).hexdigest()


# --------------------------------------------------------------------------- weights


def shipped_available() -> bool:
    from ..model import SHIPPED_WEIGHTS
    return Path(SHIPPED_WEIGHTS).exists()


class _SharedWeights:
    """The weights chosen with "Use for propagation", shared by all weight pickers that
    follow it (the Propagate and Track widgets)."""

    def __init__(self):
        self.path: str | None = None
        self._boxes: weakref.WeakSet[WeightsBox] = weakref.WeakSet()

    def register(self, box: WeightsBox) -> None:
        self._boxes.add(box)
        if self.path is not None and Path(self.path).exists():
            box.add_file(self.path, select=True)

    def use(self, path) -> None:
        self.path = str(Path(path).resolve())
        for box in list(self._boxes):
            try:
                box.add_file(self.path, select=True)
            except RuntimeError:      # deleted widget
                self._boxes.discard(box)


shared_weights = _SharedWeights()


class WeightsBox(QWidget):
    """Pick the features: shipped weights (when installed), the Lab-colour baseline, an
    untrained model (fine-tuning only) or a checkpoint file. ``value()`` returns
    ``"shipped"``, ``"lab"``, ``"scratch"`` or a file path."""

    changed = Signal()

    def __init__(self, parent=None, *, lab: bool = True, scratch: bool = False,
                 follow_shared: bool = True):
        super().__init__(parent)
        self.combo = QComboBox()
        self.browse = QPushButton("File…")
        self.browse.setToolTip("use a checkpoint file (e.g. a fine-tuned model)")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #d9a441;")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        row.addWidget(self.browse)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.note)
        if shipped_available():
            self.combo.addItem("Shipped weights (CorrFlow)", SHIPPED)
        if lab:
            self.combo.addItem("Lab colour (baseline)", LAB)
        if scratch:
            self.combo.addItem("Untrained (learn from this clip only)", SCRATCH)
        self.browse.clicked.connect(self._browse)
        self.combo.currentIndexChanged.connect(self._on_change)
        if not shipped_available():
            self.note.setText("Shipped weights are not installed: "
                              + ("using the Lab-colour baseline (no learning)."
                                 if lab else "fine-tuning starts from an untrained model."))
        else:
            self.note.hide()
        if follow_shared:
            shared_weights.register(self)

    def _on_change(self, *_):
        self.changed.emit()

    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Choose weights", str(Path.home()),
                                              "CorrFlow checkpoint (*.pt *.pth);;All files (*)")
        if path:
            self.add_file(path, select=True)

    def add_file(self, path, select: bool = True) -> None:
        path = str(Path(path).resolve())
        i = self.combo.findData(path)
        if i < 0:
            self.combo.addItem(f"File: {Path(path).name}", path)
            i = self.combo.count() - 1
            self.combo.setItemData(i, path, 3)   # Qt.ToolTipRole
        if select:
            self.combo.setCurrentIndex(i)

    def value(self) -> str:
        return self.combo.currentData()

    def set_value(self, value: str) -> None:
        i = self.combo.findData(value)
        if i < 0 and value not in (SHIPPED, LAB, SCRATCH):
            self.add_file(value)
        elif i >= 0:
            self.combo.setCurrentIndex(i)


_model_lock = threading.Lock()
_model_cache: dict = {}


def get_model(weights: str, device: str = "auto", fresh: bool = False):
    """Load the feature extractor for a WeightsBox value (runs in worker threads).

    Models are cached by (weights, device, file time); ``fresh`` gives a private copy
    (fine-tuning trains a copy anyway, but an untrained model must be new every time).
    """
    from ..device import pick_device
    from ..model import SHIPPED_WEIGHTS, load_model
    from ..model.features import CorrFlowModel
    if weights == SCRATCH:
        return CorrFlowModel().to(pick_device(device)).eval()
    spec = None if weights == SHIPPED else weights
    path = SHIPPED_WEIGHTS if spec is None else (None if spec == LAB else Path(spec))
    stamp = path.stat().st_mtime_ns if path is not None and path.exists() else None
    key = (str(weights), str(device), stamp)
    with _model_lock:
        model = None if fresh else _model_cache.get(key)
        if model is None:
            model = load_model(spec, device=device)
            if path is not None:
                model.weights_path = Path(path).resolve()
            if not fresh:
                _model_cache.clear()          # keep one model in memory
                _model_cache[key] = model
    return model


def describe_weights(weights: str) -> str:
    if weights == SHIPPED:
        return "shipped CorrFlow weights"
    if weights == LAB:
        return "Lab-colour baseline"
    if weights == SCRATCH:
        return "an untrained model"
    return f"weights {Path(weights).name}"


class Relay(QObject):
    """Carries results from the worker thread to the GUI thread (queued signals)."""

    frame = Signal(int, object)
    progress = Signal(object, object, object)


def device_combo() -> QComboBox:
    c = QComboBox()
    for d in DEVICES:
        c.addItem(d)
    c.setToolTip("auto: CUDA if available, then Apple MPS, then CPU")
    return c


def run_guarded(fn, *args, what: str = "work", **kwargs):
    """Call ``fn`` in the worker thread; return ("ok", value) or ("error", message)."""
    try:
        return "ok", fn(*args, **kwargs)
    except InputError as exc:
        return "error", str(exc)
    except MemoryError:
        return "error", f"{what} ran out of memory; use a smaller frame range or the CPU."
    except Exception as exc:   # never crash the viewer: report as a notification
        msg = " ".join(str(exc).split())[:300]
        return "error", f"{what} failed ({type(exc).__name__}: {msg})"
