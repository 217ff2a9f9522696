"""A one-row plot of the per-frame confidence of a propagation (red: unsure, 0.5 and
below; yellow: 0.75; green: sure; grey: not computed; white tick: keyframe), with the
frame shown marked; clicking a frame asks to show it. :func:`least_confident` picks
the frame to check first."""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import QRectF, Qt, Signal
from qtpy.QtGui import QColor, QPainter
from qtpy.QtWidgets import QSizePolicy, QWidget

#: layer.metadata key of a Labels layer: (T,) confidence of its propagated frames
CONFIDENCE_KEY = "corrflow_confidence"


def least_confident(confidence, keyframes) -> int | None:
    """The frame with the lowest confidence that is not a keyframe (None: no such
    computed frame). confidence: (T,) in [0, 1], NaN where not computed."""
    c = np.array(confidence, dtype=float, copy=True)
    c[[k for k in keyframes if 0 <= k < len(c)]] = np.nan
    if not np.isfinite(c).any():
        return None
    return int(np.nanargmin(c))


def merge_confidence(old, new, start: int, stop: int) -> np.ndarray:
    """A run's (T,) confidence over frames [start, stop) on top of the earlier one (frames
    the run did not compute, e.g. after a cancel, keep their earlier value)."""
    out = np.full(len(new), np.nan) if old is None or len(old) != len(new) else \
        np.array(old, dtype=float)
    part = np.asarray(new, dtype=float)[start:stop]
    out[start:stop] = np.where(np.isfinite(part), part, out[start:stop])
    return out


def _x(event) -> float:
    """The mouse x of a Qt event (Qt 6: position(); Qt 5: x())."""
    return event.position().x() if hasattr(event, "position") else float(event.x())


def confidence_colour(c: float) -> QColor:
    """Red up to 0.5, through yellow (0.75) to green (1); grey for NaN. The upper half is
    spread out because propagated frames score mostly above 0.5."""
    if not np.isfinite(c):
        return QColor(90, 90, 90)
    u = float(min(max((c - 0.5) / 0.5, 0.0), 1.0))
    if u < 0.5:
        return QColor(230, int(50 + 360 * u), 50)
    return QColor(int(230 - 400 * (u - 0.5)), 230, 50)


class ConfidenceStrip(QWidget):
    """The per-frame confidence as coloured bars, one column per frame."""

    frame_clicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.confidence = np.zeros(0)
        self.keyframes: list[int] = []
        self.current = -1
        self.setMinimumHeight(14)
        self.setMaximumHeight(18)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(True)
        self.setToolTip("per-frame confidence of the propagation: click a frame to show it")

    def set_confidence(self, confidence, keyframes=()) -> None:
        self.confidence = np.zeros(0) if confidence is None else np.asarray(confidence, float)
        self.keyframes = [int(k) for k in keyframes]
        self.update()

    def set_current(self, t: int) -> None:
        if t != self.current:
            self.current = int(t)
            self.update()

    def frame_at(self, x: float) -> int | None:
        n = len(self.confidence)
        if n == 0 or self.width() <= 0:
            return None
        return int(min(max(x / self.width() * n, 0), n - 1))

    def paintEvent(self, event):  # noqa: N802 - Qt API
        p = QPainter(self)
        w, h, n = self.width(), self.height(), len(self.confidence)
        p.fillRect(0, 0, w, h, QColor(40, 40, 40))
        if n:
            step = w / n
            for t, c in enumerate(self.confidence):
                p.fillRect(QRectF(t * step, 0, max(step, 1.0), h), confidence_colour(c))
            for t in self.keyframes:
                if 0 <= t < n:
                    p.fillRect(QRectF(t * step, 0, max(step, 1.0), 3), QColor("white"))
            if 0 <= self.current < n:
                p.setPen(QColor("white"))
                p.drawRect(QRectF(self.current * step, 0, max(step, 2.0), h - 1))
        p.end()

    def mousePressEvent(self, event):  # noqa: N802 - Qt API
        t = self.frame_at(_x(event))
        if t is not None and event.button() == Qt.MouseButton.LeftButton:
            self.frame_clicked.emit(t)

    def mouseMoveEvent(self, event):  # noqa: N802 - Qt API
        t = self.frame_at(_x(event))
        if t is not None:
            c = self.confidence[t]
            what = "keyframe" if t in self.keyframes else (
                f"confidence {c:.2f}" if np.isfinite(c) else "not propagated yet")
            self.setToolTip(f"frame {t}: {what} (click to show it)")
