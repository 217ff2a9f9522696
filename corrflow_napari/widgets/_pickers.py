"""Qt pickers the widgets share: a layer combo kept in sync with the viewer, the device
combo and the weights picker (which follows the shared "Use for propagation" choice)."""
from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..model.cache import LAB, SCRATCH, SHIPPED, shared_weights, shipped_available

DEVICES = ("auto", "cpu", "cuda", "mps")


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


class FrameRange(QWidget):
    """First and last frame (inclusive) of a video: two spin boxes, "from ... to ..."."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.start_spin, self.end_spin = QSpinBox(), QSpinBox()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.start_spin)
        row.addWidget(QLabel("to"))
        row.addWidget(self.end_spin)

    def set_count(self, n_frames: int) -> None:
        """Allow frames 0..n_frames-1 and select them all."""
        for s in (self.start_spin, self.end_spin):
            s.setRange(0, max(0, n_frames - 1))
        self.start_spin.setValue(0)
        self.end_spin.setValue(max(0, n_frames - 1))

    def span(self) -> tuple[int, int]:
        """(start, stop): the frames start..stop-1."""
        return self.start_spin.value(), self.end_spin.value() + 1


def device_combo() -> QComboBox:
    """auto / cpu / cuda / mps."""
    c = QComboBox()
    for d in DEVICES:
        c.addItem(d)
    c.setToolTip("auto: CUDA if available, then Apple MPS, then CPU")
    return c


class WeightsBox(QWidget):
    """Pick the features: shipped weights (when installed), the Lab-colour baseline, an
    untrained model (fine-tuning only) or a checkpoint file. ``value()`` returns
    ``"shipped"``, ``"lab"``, ``"scratch"`` or a file path (see ``model.cache``)."""

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
        self.combo.currentIndexChanged.connect(lambda *_: self.changed.emit())
        if not shipped_available():
            self.note.setText("Shipped weights are not installed: "
                              + ("using the Lab-colour baseline (no learning)."
                                 if lab else "fine-tuning starts from an untrained model."))
        else:
            self.note.hide()
        if follow_shared:
            shared_weights.follow(self._follow)

    def _follow(self, path: str) -> bool:
        try:
            self.add_file(path, select=True)
        except RuntimeError:      # the Qt widget was deleted: stop following
            return False
        return True

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
            self.combo.setItemData(i, path, Qt.ItemDataRole.ToolTipRole)
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
