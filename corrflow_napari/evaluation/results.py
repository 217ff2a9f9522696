"""Results of an evaluation run: the one ``results.json`` writer, means over sequences and
the printed tables (DAVIS J&F tables are :func:`corrflow_napari.metrics.format_table`)."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import write_json_atomic
from ..io.atomic import jsonable
from .badja_data import ALPHAS

RESULTS_NAME = "results.json"


def write_results(out_dir: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` to ``out_dir/results.json`` atomically (a reader never sees half a
    file; the folder is created); numpy numbers and arrays become JSON numbers and lists.
    Returns the path."""
    path = Path(out_dir) / RESULTS_NAME
    write_json_atomic(path, payload, indent=1, default=_jsonable)
    return path


def _jsonable(o):
    """JSON stand-in for numpy arrays (lists), then :func:`~corrflow_napari.io.atomic.jsonable`
    (numpy scalars as numbers, anything else as its str)."""
    return o.tolist() if isinstance(o, np.ndarray) else jsonable(o)


def summarise_badja(results: dict[str, dict], alphas: Sequence[float] = ALPHAS) -> dict:
    """Mean over sequences of each PCK (sequences weigh equally; NaN ones skipped)."""
    out = {}
    for a in alphas:
        vals = [r[f"pck@{a:g}"] for r in results.values()
                if not math.isnan(r.get(f"pck@{a:g}", float("nan")))]
        out[f"pck@{a:g}"] = float(np.mean(vals)) if vals else float("nan")
    return out


def format_badja_table(columns: dict[str, dict[str, dict]], alphas: Sequence[float] = ALPHAS
                       ) -> str:
    """Table of PCK (percent) per sequence and mean; one column pair per method.

    columns: {method name: {sequence: result dict}}.
    """
    names = list(columns)
    seqs: list[str] = []
    for res in columns.values():
        seqs += [s for s in res if s not in seqs]
    head = f"{'sequence':<16}" + "".join(f"{n[:17]:>18}" for n in names)
    sub = f"{'':<16}" + "".join(f"{'PCK@' + '/'.join(f'{a:g}' for a in alphas):>18}"
                                for _ in names)
    lines = [head, sub, "-" * len(head)]

    def cell(r):
        if r is None:
            return f"{'-':>18}"
        vals = [r.get(f"pck@{a:g}", float("nan")) for a in alphas]
        return f"{' / '.join('  -' if math.isnan(v) else f'{100 * v:.1f}' for v in vals):>18}"

    for s in seqs:
        lines.append(f"{s:<16}" + "".join(cell(columns[n].get(s)) for n in names))
    lines.append("-" * len(head))
    lines.append(f"{'mean':<16}" + "".join(cell(summarise_badja(columns[n])) for n in names))
    return "\n".join(lines)
