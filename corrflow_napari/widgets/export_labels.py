"""The "Export labels…" dialog: a Labels layer saved as a folder of indexed PNGs (the
CLI's format) or a tif stack (:mod:`corrflow_napari.writer`), never replacing files
without asking."""
from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_info
from qtpy.QtWidgets import QFileDialog, QMessageBox

from ..errors import InputError
from ..writer import existing_masks, export_labels

PNG_FILTER = "Indexed PNG folder: 00000.png, 00001.png, ... (*)"
TIF_FILTER = "TIF stack (*.tif *.tiff)"


def default_export_path(layer) -> Path:
    """``<folder of the video or home>/<layer name>_masks``."""
    meta = getattr(layer, "metadata", {}) or {}
    source = meta.get("corrflow_source")
    folder = Path(source).parent if source else Path.home()
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in layer.name).strip("_.")
    return folder / f"{name or 'labels'}_masks"


def ask_export_path(parent, layer) -> Path | None:
    """Ask where to save ``layer``: a new/empty folder for PNGs or a ``.tif`` file; None
    when the user cancels (or declines replacing existing masks)."""
    path, chosen = QFileDialog.getSaveFileName(
        parent, f"Export labels '{layer.name}'", str(default_export_path(layer)),
        f"{PNG_FILTER};;{TIF_FILTER}")
    if not path:
        return None
    p = Path(path)
    if chosen == TIF_FILTER and p.suffix.lower() not in (".tif", ".tiff"):
        p = p.with_suffix(".tif")       # the dialog already asked about replacing a file
    elif chosen != TIF_FILTER:
        old = existing_masks(p, int(layer.data.shape[0])) if p.is_dir() else []
        if old and QMessageBox.question(
                parent, "Replace masks?",
                f"{p} already holds {len(old)} mask files ({old[0].name} ...). Replace them?"
        ) != QMessageBox.StandardButton.Yes:
            return None
    return p


def export_layer(layer, path) -> list[Path]:
    """Write ``layer``'s (T, H, W) labels to ``path`` (see :func:`writer.export_labels`)
    and say where."""
    if layer is None:
        raise InputError("no Labels layer to export: pick one in the Labels box.")
    written = export_labels(path, layer.data)
    where = written[0] if len(written) == 1 else f"{len(written)} PNGs in {Path(path)}"
    show_info(f"exported labels '{layer.name}' to {where}")
    return written
