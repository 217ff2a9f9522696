"""User-facing settings, described once for every shell.

A settings dataclass marks each field that users may change with
``field(default=..., metadata=option("help", minimum=..., maximum=..., choices=...))``.
:func:`options` lists them; the CLI turns them into flags (:func:`add_arguments`,
:func:`from_arguments`) and the widgets into their "Advanced" form, so a setting has one
name, one range and one help text everywhere. Qt-free.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass

from .errors import InputError

_KEY = "corrflow_option"


def option(help: str, *, minimum: float | None = None, maximum: float | None = None,
           choices: tuple | None = None, none_means: str | None = None) -> dict:
    """Field metadata for a user-facing setting. ``none_means`` documents what ``None``
    does for optional fields (e.g. "all matches")."""
    return {_KEY: {"help": help, "minimum": minimum, "maximum": maximum,
                   "choices": tuple(choices) if choices else None, "none_means": none_means}}


@dataclass(frozen=True)
class Option:
    """One user-facing setting: ``name`` (field), ``kind`` (int/float/str/bool), its
    default, help text, inclusive range or choices, and whether ``None`` is allowed."""

    name: str
    kind: type
    default: object
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None
    none_means: str | None = None

    @property
    def optional(self) -> bool:
        return self.none_means is not None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value):
        """``value`` converted to ``kind`` and range-checked; InputError (one line naming
        the flag and the allowed values) otherwise."""
        if value is None:
            if self.optional:
                return None
            raise InputError(f"{self.flag} needs a value; {self.help}.")
        try:
            value = self.kind(value)
        except (TypeError, ValueError):
            raise InputError(f"{self.flag} {value!r} is not a valid {self.kind.__name__}; "
                             f"{self.help}.") from None
        if self.choices is not None and value not in self.choices:
            raise InputError(f"{self.flag} {value!r} is not one of "
                             f"{', '.join(map(str, self.choices))}.")
        lo, hi = self.minimum, self.maximum
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise InputError(f"{self.flag} {value} is out of range; use a value in "
                             f"{_fmt(lo)}..{_fmt(hi)}.")
        return value


def _fmt(x) -> str:
    return "" if x is None else f"{x:g}"


def _kind(hint) -> type:
    """The concrete type of a field hint such as ``int``, ``float | None``."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or \
        typing.get_origin(hint) is typing.Union else ()
    concrete = [a for a in args if a is not type(None)] if args else [hint]
    return concrete[0]


def options(settings) -> list[Option]:
    """The user-facing settings of a dataclass, in field order. Given the type, each
    ``default`` is the field's default; given an instance, its value there (e.g.
    ``options(TrackSettings().propagation)`` shows tracking's own top-k)."""
    cls = settings if isinstance(settings, type) else type(settings)
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_KEY)
        if meta is None:
            continue
        if settings is not cls:
            default = getattr(settings, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()
        out.append(Option(f.name, _kind(hints[f.name]), default, **meta))
    return out


def with_values(settings, **values):
    """Copy of the dataclass ``settings`` with ``values`` checked and applied; a value of
    ``None`` means "unchanged" unless given through :func:`from_arguments`."""
    by_name = {o.name: o for o in options(settings)}
    changes = {}
    for name, value in values.items():
        if value is None:
            continue
        if name not in by_name:
            raise InputError(f"unknown setting {name!r}; known: {', '.join(by_name)}.")
        changes[name] = by_name[name].check(value)
    return dataclasses.replace(settings, **changes)


def add_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per user-facing setting of ``cls`` (``--n-recent``); help shows the default
    and range. Flags default to None ("the settings' default")."""
    for o in options(cls):
        if o.name in skip:
            continue
        extra = ((f"; {o.none_means}" if o.choices is not None else
                  f"; {o.none_means} if 'none'") if o.optional else "")
        rng = (f" [{_fmt(o.minimum)}..{_fmt(o.maximum)}]"
               if o.minimum is not None or o.maximum is not None else "")
        kw: dict = {"help": f"{o.help}{rng} (default: {o.default}{extra})", "default": None}
        if o.kind is bool:
            kw["type"] = _parse_bool
            kw["metavar"] = "0|1"
        elif o.choices is not None:
            kw["choices"] = o.choices
            kw["type"] = o.kind
        else:
            kw["type"] = _none_or(o.kind) if o.optional else o.kind
        parser.add_argument(o.flag, dest=o.name, **kw)


class _NoneValue:
    """Marker for a flag explicitly set to 'none'."""


NONE = _NoneValue()


def _none_or(kind):
    def parse(text: str):
        return NONE if text.strip().lower() == "none" else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0 or 1, got {text!r}")


def from_arguments(cls, args: argparse.Namespace, base=None):
    """Settings of type ``cls`` (starting from ``base`` or the defaults) with every flag
    the user gave applied and checked."""
    settings = base if base is not None else cls()
    changes = {}
    for o in options(cls):
        value = getattr(args, o.name, None)
        if value is NONE:
            changes[o.name] = None
        elif value is not None:
            changes[o.name] = o.check(value)
    return dataclasses.replace(settings, **changes)
