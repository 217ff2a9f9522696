"""The Advanced section built from a settings dataclass (no viewer)."""
from dataclasses import dataclass, field

import pytest
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from corrflow_napari.options import option, options
from corrflow_napari.propagation import PropagationSettings
from corrflow_napari.tracking import TrackSettings
from corrflow_napari.widgets._settings_form import SettingsForm


@dataclass(frozen=True)
class Inner:
    level: int = field(default=2, metadata=option("a level", minimum=0, maximum=9))


@dataclass(frozen=True)
class Kinds:
    flag: bool = field(default=True, metadata=option("a switch"))
    mode: str = field(default="b", metadata=option("a mode", choices=("a", "b")))
    tag: str | None = field(default=None, metadata=option("a tag", none_means="no tag"))
    eps: float = field(default=1e-4, metadata=option("small", minimum=0.0, maximum=1.0))
    limit: float | None = field(default=None, metadata=option(
        "an optional limit", minimum=0.5, maximum=4.0, none_means="no limit"))
    inner: Inner = field(default_factory=Inner)
    hidden: int = 7                     # not user-facing: kept from the base


@pytest.fixture
def form(qtbot):
    def make(settings):
        f = SettingsForm(settings)
        qtbot.addWidget(f)
        return f
    return make


def test_propagation_form_has_one_editor_per_option_and_round_trips(form):
    f = form(PropagationSettings())
    assert list(f.editors) == [o.name for o in options(PropagationSettings)]
    assert not f.expanded                                  # collapsed by default
    f.toggle.click()
    assert f.expanded
    assert f.settings() == PropagationSettings()
    for o in options(PropagationSettings):
        assert o.help in f.editor(o.name).toolTip()
    spin = f.editor("n_recent")
    assert isinstance(spin, QSpinBox) and (spin.minimum(), spin.maximum()) == (0, 32)
    f.set_value("n_recent", 5)
    f.set_value("topk", None)
    assert f.editor("topk").text() == "all matches"
    assert f.settings() == PropagationSettings(n_recent=5, topk=None)
    custom = PropagationSettings(radius=3, scale=0.5, chunk_tiles=16)
    f.set_settings(custom)
    assert f.settings() == custom                          # chunk_tiles kept


def test_nested_settings_get_their_own_editors(qtbot):
    base = TrackSettings()
    f = SettingsForm(base, skip=("propagation.max_keyframes",))
    qtbot.addWidget(f)
    assert "propagation.n_recent" in f.editors and "motion" in f.editors
    assert "propagation.max_keyframes" not in f.editors
    assert f.editor("propagation.topk").value() == base.propagation.topk   # tracking's 3
    assert f.settings() == base
    f.set_value("propagation.radius", 4)
    assert f.settings().propagation.radius == 4


def test_every_kind_of_option(form):
    f = form(Kinds(hidden=3))
    assert isinstance(f.editor("flag"), QCheckBox)
    assert isinstance(f.editor("mode"), QComboBox)
    assert isinstance(f.editor("tag"), QLineEdit)
    assert isinstance(f.editor("eps"), QDoubleSpinBox)
    assert f.settings() == Kinds(hidden=3)                 # 1e-4 survives the spin box
    f.set_value("flag", False)
    f.set_value("mode", "a")
    f.set_value("tag", "x")
    f.set_value("limit", 2.5)
    f.set_value("inner.level", 9)
    assert f.settings() == Kinds(flag=False, mode="a", tag="x", limit=2.5,
                                 inner=Inner(level=9), hidden=3)
    f.set_value("limit", None)
    assert f.settings().limit is None
    changed = []
    f.changed.connect(lambda: changed.append(1))
    f.set_value("inner.level", 1)
    assert changed
