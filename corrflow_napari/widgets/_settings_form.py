"""A collapsible "Advanced" section built from a settings dataclass: one editor per
user-facing option (``corrflow_napari.options.options``: the same names, ranges, choices
and help as the CLI's flags), tooltips = help; ``settings()`` returns the dataclass.

A field holding another settings dataclass (e.g. TrackSettings' propagation settings)
gets its own sub-heading; its editors are named ``"field.option"``.
"""
from __future__ import annotations

import dataclasses

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..options import Option, options

_INT_LIMIT = 2**31 - 2


def _nested(settings) -> list[tuple[str, object]]:
    """(field name, value) of the fields that hold settings dataclasses with options."""
    return [(f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings)
            if dataclasses.is_dataclass(getattr(settings, f.name))
            and options(getattr(settings, f.name))]


def _none_label(o: Option) -> str:
    """What an editor shows for None: the option's words, or "auto" when they are long."""
    return o.none_means if len(o.none_means) <= 16 else "auto"


def _tooltip(o: Option) -> str:
    rng = (f" [{'' if o.minimum is None else f'{o.minimum:g}'}.."
           f"{'' if o.maximum is None else f'{o.maximum:g}'}]"
           if o.minimum is not None or o.maximum is not None else "")
    none = f"; {_none_label(o)}: {o.none_means}" if o.optional else ""
    return f"{o.help}{rng} (default: {o.default}{none})"


def _decimals(o: Option) -> int:
    """Decimals a float spin box needs to show the option's default and range exactly."""
    values = [v for v in (o.default, o.minimum, o.maximum) if v is not None]
    return max([2] + [next((d for d in range(9) if round(v, d) == v), 8) for v in values])


def _make_editor(o: Option) -> QWidget:
    if o.kind is bool and not o.optional:
        return QCheckBox()
    if o.choices is not None or o.kind is bool:
        combo = QComboBox()
        for c in (o.choices if o.choices is not None else (False, True)):
            combo.addItem(str(c), c)
        if o.optional:
            combo.addItem(_none_label(o), None)
        return combo
    if o.kind in (int, float):
        spin = QSpinBox() if o.kind is int else QDoubleSpinBox()
        lo = -_INT_LIMIT if o.minimum is None else o.minimum
        hi = _INT_LIMIT if o.maximum is None else o.maximum
        if o.kind is float:
            spin.setDecimals(_decimals(o))
            spin.setSingleStep(0.05 if hi - lo <= 2 else 0.5)
        step = spin.singleStep()
        if o.optional:                 # one step below the minimum means None
            lo -= step
            spin.setSpecialValueText(_none_label(o))
        spin.setRange(o.kind(lo), o.kind(hi))
        return spin
    edit = QLineEdit()
    if o.optional:                     # empty means None
        edit.setPlaceholderText(_none_label(o))
    return edit


def _read(editor: QWidget, o: Option):
    if isinstance(editor, QCheckBox):
        return editor.isChecked()
    if isinstance(editor, QComboBox):
        return editor.currentData()
    if isinstance(editor, (QSpinBox, QDoubleSpinBox)):
        value = editor.value()
        if o.optional and value == editor.minimum():
            return None
        return o.kind(value)
    text = editor.text().strip()
    return None if o.optional and not text else text


def _write(editor: QWidget, o: Option, value) -> None:
    if isinstance(editor, QCheckBox):
        editor.setChecked(bool(value))
    elif isinstance(editor, QComboBox):
        editor.setCurrentIndex(max(editor.findData(value), 0))
    elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
        editor.setValue(editor.minimum() if value is None else value)
    else:
        editor.setText("" if value is None else str(value))


def _changed_signal(editor: QWidget):
    if isinstance(editor, QCheckBox):
        return editor.toggled
    if isinstance(editor, QComboBox):
        return editor.currentIndexChanged
    if isinstance(editor, (QSpinBox, QDoubleSpinBox)):
        return editor.valueChanged
    return editor.textChanged


class SettingsForm(QWidget):
    """Collapsible editor of a settings dataclass (closed by default).

    ``settings`` gives the starting values and the fields that are not user-facing;
    options named in ``skip`` (e.g. ``"propagation.max_keyframes"``) get no editor and
    keep their value.
    """

    changed = Signal()

    def __init__(self, settings, title: str = "Advanced", parent=None,
                 skip: tuple[str, ...] = ()):
        super().__init__(parent)
        self._base, self._skip = settings, set(skip)
        self.editors: dict[str, tuple[Option, QWidget]] = {}
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.body = QWidget()
        form = QFormLayout(self.body)
        form.setContentsMargins(12, 0, 0, 0)
        self._add(form, settings, "")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.toggle)
        lay.addWidget(self.body)
        self.toggle.toggled.connect(self.set_expanded)
        self.set_expanded(False)

    def _add(self, form: QFormLayout, settings, prefix: str) -> None:
        for o in options(settings):
            if prefix + o.name in self._skip:
                continue
            editor = _make_editor(o)
            editor.setToolTip(_tooltip(o))
            _write(editor, o, getattr(settings, o.name))
            _changed_signal(editor).connect(lambda *_: self.changed.emit())
            label = QLabel(o.name.replace("_", " "))
            label.setToolTip(o.help)
            form.addRow(label, editor)
            self.editors[prefix + o.name] = (o, editor)
        for name, sub in _nested(settings):
            form.addRow(QLabel(f"<b>{name.replace('_', ' ')}</b>"))
            self._add(form, sub, f"{prefix}{name}.")

    @property
    def expanded(self) -> bool:
        return self.body.isVisibleTo(self)

    def set_expanded(self, expanded: bool) -> None:
        self.body.setVisible(bool(expanded))
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded
                                 else Qt.ArrowType.RightArrow)
        if self.toggle.isChecked() != bool(expanded):
            self.toggle.setChecked(bool(expanded))

    def editor(self, name: str) -> QWidget:
        """The editor of option ``name`` (``"field.option"`` inside a nested section)."""
        return self.editors[name][1]

    def set_value(self, name: str, value) -> None:
        o, editor = self.editors[name]
        _write(editor, o, value)

    def settings(self):
        """The settings dataclass with the form's values (range-checked; InputError)."""
        return self._collect(self._base, "")

    def _collect(self, settings, prefix: str):
        changes = {o.name: o.check(_read(self.editors[prefix + o.name][1], o))
                   for o in options(settings) if prefix + o.name in self.editors}
        for name, sub in _nested(settings):
            changes[name] = self._collect(sub, f"{prefix}{name}.")
        return dataclasses.replace(settings, **changes)

    def set_settings(self, settings) -> None:
        """Show the values of ``settings`` (same dataclass type)."""
        self._base = settings
        self._load(settings, "")

    def _load(self, settings, prefix: str) -> None:
        for o in options(settings):
            if prefix + o.name in self.editors:
                self.set_value(prefix + o.name, getattr(settings, o.name))
        for name, sub in _nested(settings):
            self._load(sub, f"{prefix}{name}.")
