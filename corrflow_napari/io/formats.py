"""The one table of input formats: which paths :func:`~corrflow_napari.io.open_video`
opens, and how.

Used by ``open_video``, the napari reader (and its ``napari.yaml`` patterns, checked by a
test) and training's search for videos, so they all accept the same files.

=============  ==========================================  ===========================
kind           extensions                                  decoded by
=============  ==========================================  ===========================
``video``      :data:`VIDEO_EXTENSIONS` (.mp4 .avi ...)    the ffmpeg of imageio-ffmpeg
``gif``        :data:`GIF_EXTENSIONS`                      Pillow
``tif stack``  :data:`TIFF_EXTENSIONS`                     tifffile
``image``      :data:`IMAGE_EXTENSIONS` (frames; a single  Pillow (tifffile for .tif)
               image opens as a one-frame video)
``folder``     a folder holding image frames               as ``image``, natural sort
=============  ==========================================  ===========================
"""
from __future__ import annotations

import os
from pathlib import Path

#: video files decoded with ffmpeg
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg",
                    ".wmv", ".flv", ".ogv", ".3gp", ".ts", ".mts", ".m2ts")
#: animated GIFs (Pillow)
GIF_EXTENSIONS = (".gif",)
#: tif stacks (multi-page or one (T,H,W[,C]) array); a tif is also a valid frame image
TIFF_EXTENSIONS = (".tif", ".tiff")
#: single frames, inside a folder of frames or opened alone as a one-frame video
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp") + TIFF_EXTENSIONS + (".webp",)
#: files that always hold a whole clip (tif excluded: it may be one picture)
CLIP_EXTENSIONS = VIDEO_EXTENSIONS + GIF_EXTENSIONS
#: single files the napari reader claims (exactly the patterns in napari.yaml)
READER_EXTENSIONS = CLIP_EXTENSIONS + TIFF_EXTENSIONS

#: the table: input kind -> file extensions (lower case, with the dot)
FORMATS: dict[str, tuple[str, ...]] = {
    "video": VIDEO_EXTENSIONS,
    "gif": GIF_EXTENSIONS,
    "tif stack": TIFF_EXTENSIONS,
    "image": IMAGE_EXTENSIONS,
}


def file_format(path) -> str | None:
    """The kind of a file by its extension: ``"video"``, ``"gif"``, ``"tif stack"``,
    ``"image"``, or None when ``open_video`` does not open it.  The file itself is not
    read (a ``.tif`` is a "tif stack" even when it holds one picture)."""
    ext = Path(os.fspath(path)).suffix.lower()
    for kind, exts in FORMATS.items():
        if ext in exts:
            return kind
    return None


def is_frame_file(path) -> bool:
    """Whether ``path`` has the extension of a frame image (:data:`IMAGE_EXTENSIONS`)."""
    return Path(os.fspath(path)).suffix.lower() in IMAGE_EXTENSIONS


def is_frame_folder(path) -> bool:
    """Whether ``path`` is a folder holding at least one visible frame image directly
    inside (hidden files, starting with ``.``, are ignored); False if it cannot be listed."""
    try:
        with os.scandir(path) as it:
            return any(e.is_file() and not e.name.startswith(".") and is_frame_file(e.name)
                       for e in it)
    except OSError:
        return False
