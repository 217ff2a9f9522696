"""Average the weights of runs that started from one checkpoint (a model soup).

    python scripts/average_weights.py runs/cont4/export.pt runs/cont5/export.pt \
        --out runs/soup45.pt
    python scripts/dev_check.py runs/soup45.pt        # ships only if it beats the default

See corrflow_napari/training/weight_average.py.
"""
from __future__ import annotations

import argparse
import sys

from corrflow_napari.errors import InputError
from corrflow_napari.training.weight_average import write_average


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="+", help="two or more weights files (.pt)")
    ap.add_argument("--out", required=True, help="averaged weights file to write (.pt)")
    args = ap.parse_args()
    try:
        obj = write_average(args.weights, args.out)
    except InputError as exc:
        sys.exit(f"average_weights: {exc}")
    print(f"wrote {args.out}: mean of {len(args.weights)} files (steps {obj['steps']})")


if __name__ == "__main__":
    main()
