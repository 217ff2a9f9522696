"""A tiny live loss curve drawn with QPainter (no plotting dependency)."""
from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPen, QPixmap
from qtpy.QtWidgets import QLabel, QSizePolicy


class LossPlot(QLabel):
    """Shows the loss of every step (thin) and its running mean (thick)."""

    def __init__(self, parent=None, width: int = 300, height: int = 150, window: int = 10):
        super().__init__(parent)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.window = window
        self._w, self._h = width, height
        self.setMinimumSize(200, 110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(height)
        self.redraw()

    def clear(self) -> None:
        self.steps, self.losses = [], []
        self.redraw()

    def add(self, step: int, loss: float) -> None:
        if loss is None or not math.isfinite(float(loss)):
            return
        self.steps.append(int(step))
        self.losses.append(float(loss))
        self.redraw()

    def resizeEvent(self, event):  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self.redraw()

    def _mean(self) -> list[float]:
        out, acc = [], []
        for v in self.losses:
            acc.append(v)
            if len(acc) > self.window:
                acc.pop(0)
            out.append(sum(acc) / len(acc))
        return out

    def redraw(self) -> None:
        w = max(self.width(), self._w) if self.isVisible() else self._w
        h = self._h
        pix = QPixmap(w, h)
        pix.fill(QColor("#262930"))
        p = QPainter(pix)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont()
        font.setPointSize(8)
        p.setFont(font)
        left, right, top, bottom = 44, 8, 18, 20
        plot = QRectF(left, top, w - left - right, h - top - bottom)
        p.setPen(QPen(QColor("#6b6f7a"), 1))
        p.drawRect(plot)
        p.setPen(QColor("#d0d3d9"))
        if not self.losses:
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "loss curve appears here")
            p.end()
            self.setPixmap(pix)
            return
        lo, hi = min(self.losses), max(self.losses)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        pad = 0.05 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        s0, s1 = self.steps[0], max(self.steps[-1], self.steps[0] + 1)

        def pt(s, v):
            x = plot.left() + (s - s0) / (s1 - s0) * plot.width()
            y = plot.bottom() - (v - lo) / (hi - lo) * plot.height()
            return QPointF(x, y)

        p.drawText(QRectF(0, top - 6, left - 4, 14), Qt.AlignmentFlag.AlignRight, f"{hi:.3g}")
        p.drawText(QRectF(0, plot.bottom() - 8, left - 4, 14), Qt.AlignmentFlag.AlignRight,
                   f"{lo:.3g}")
        p.drawText(QRectF(left, plot.bottom() + 3, 60, 14), Qt.AlignmentFlag.AlignLeft,
                   f"step {s0}")
        p.drawText(QRectF(w - right - 80, plot.bottom() + 3, 80, 14),
                   Qt.AlignmentFlag.AlignRight, f"step {self.steps[-1]}")
        mean = self._mean()
        p.drawText(QRectF(left, 1, w - left - right, 14), Qt.AlignmentFlag.AlignLeft,
                   f"loss {self.losses[-1]:.4f}   mean({self.window}) {mean[-1]:.4f}")
        for values, colour, width in ((self.losses, "#5fa8d3", 1.0), (mean, "#f2b134", 2.0)):
            p.setPen(QPen(QColor(colour), width))
            pts = [pt(s, v) for s, v in zip(self.steps, values)]
            if len(pts) == 1:
                p.drawEllipse(pts[0], 2, 2)
            for a, b in zip(pts, pts[1:]):
                p.drawLine(a, b)
        p.end()
        self.setPixmap(pix)
