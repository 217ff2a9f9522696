"""napari reader: video files, folders of frames and tif stacks -> one lazy RGB Image layer.

It claims the files of :data:`corrflow_napari.io.READER_EXTENSIONS` (the patterns of
``napari.yaml``) and folders of frames; single pictures are left to napari's own reader.

``get_reader(path)`` follows the napari convention: it returns ``None`` for paths it
cannot read (so napari tries other readers) and a reader function otherwise. For a
path it claims, the reader function raises :class:`~corrflow_napari.errors.InputError`
with a one-line message if the file turns out to be unreadable.

napari's own reader also claims video files (and decodes every frame at once). npe2 has
no reader priority: when two readers match, napari uses the reader preferred for the
file's pattern in ``settings.plugins.extension2reader`` and otherwise asks the user.
:func:`prefer_our_reader` (run when the plugin is activated, ``on_activate`` in
``napari.yaml``) adds that preference for our video patterns (``*.mp4``, ``*.MP4``, ...)
wherever the user has none, so File > Open and drag-and-drop use the lazy reader; tif
files stay with napari (a tif is often a single picture). In scripts,
``viewer.open(path)`` uses napari's reader unless told otherwise (its ``plugin``
argument defaults to "napari"): pass ``plugin="corrflow-napari"`` (or ``plugin=None``
to follow the preference).
"""
from __future__ import annotations

import os
from pathlib import Path

from .io.formats import CLIP_EXTENSIONS, TIFF_EXTENSIONS, is_frame_folder


def _is_tif_stack(p: Path) -> bool:
    """True for multi-frame tifs; False for a single 2D (grey or RGB) picture, which
    napari's own reader handles. Unparseable files are claimed (and reported)."""
    try:
        import tifffile
        with tifffile.TiffFile(p) as tf:
            if len(tf.pages) > 1:
                return True
            shape = tf.series[0].shape if tf.series else ()
    except Exception:
        return True
    if len(shape) <= 2:
        return False
    if len(shape) == 3 and shape[-1] in (3, 4):
        return False
    return True


PLUGIN_NAME = "corrflow-napari"


def preferred_patterns() -> list[str]:
    """The filename patterns our reader should win: video files and gifs, lower and
    upper case (napari matches preferences case-sensitively)."""
    return [f"*{e}" for e in CLIP_EXTENSIONS] + [f"*{e.upper()}" for e in CLIP_EXTENSIONS]


def prefer_our_reader() -> list[str]:
    """Make our reader napari's preferred one for :func:`preferred_patterns` where the
    user has no preference yet (their choices are kept). Returns the patterns added."""
    from napari.settings import get_settings
    plugins = get_settings().plugins
    current = dict(plugins.extension2reader)
    added = [p for p in preferred_patterns() if p not in current]
    if added:
        plugins.extension2reader = {**current, **dict.fromkeys(added, PLUGIN_NAME)}
    return added


def activate(context=None) -> None:
    """npe2 ``on_activate``: called once when one of our contributions is first used."""
    try:
        prefer_our_reader()
    except Exception:   # pragma: no cover - settings unavailable: napari asks instead
        pass


def get_reader(path):
    """npe2 reader contribution: a reader function for ``path``, or None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        p = Path(os.fspath(path))
    except TypeError:
        return None
    if p.is_dir():
        return read_video if is_frame_folder(p) else None
    ext = p.suffix.lower()
    if ext in CLIP_EXTENSIONS:
        return read_video
    if ext in TIFF_EXTENSIONS and (not p.exists() or _is_tif_stack(p)):
        return read_video
    return None


def read_video(path):
    """Open ``path`` lazily as one ``(T, H, W, 3)`` RGB Image layer named after it."""
    from .io import open_video
    if isinstance(path, (list, tuple)):
        path = path[0]
    p = Path(os.fspath(path))
    video = open_video(p)      # raises InputError with a clear message when it cannot
    meta = {"corrflow_source": str(p.resolve()), "fps": video.fps}
    return [(video, {"name": video.name or p.stem, "rgb": True, "metadata": meta}, "image")]
