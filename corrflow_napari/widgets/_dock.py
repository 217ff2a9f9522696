"""The body of a dock widget: compact margins and spacing, so that the three docks fit
a 1080-px-tall screen when napari stacks them (it squeezes the earlier docks of an area
to their minimum height, so their content must be short rather than scrollable)."""
from __future__ import annotations

from qtpy.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget


def compact_body(widget: QWidget) -> QVBoxLayout:
    """The vertical layout of ``widget``, margins 6/4 px, spacing 4 px."""
    lay = QVBoxLayout(widget)
    lay.setContentsMargins(6, 4, 6, 4)
    lay.setSpacing(4)
    return lay


def hbox(*items, fixed=()) -> QHBoxLayout:
    """A row of widgets sharing the width (those in ``fixed`` keep their own width)."""
    row = QHBoxLayout()
    for w in items:
        row.addWidget(w, 0 if w in fixed else 1)
    return row


def reconnect(old, new, event: str, callback):
    """Move ``callback`` from layer ``old``'s ``events.<event>`` to ``new``'s (either may
    be None); returns ``new``."""
    if old is not None:
        try:
            getattr(old.events, event).disconnect(callback)
        except (TypeError, ValueError, RuntimeError):
            pass
    if new is not None:
        getattr(new.events, event).connect(callback)
    return new
