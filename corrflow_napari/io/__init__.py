"""Reading and writing video, label masks and track files.

A video in memory is ``(T, H, W, 3) uint8`` RGB.  Modules, one concept each:

* :mod:`.formats` - the one table of supported inputs (video files decoded by ffmpeg,
  .gif, folders of frames, tif stacks, single images) and ``file_format(path)``;
* :mod:`.video` - the lazy :class:`Video`, :func:`open_video`, :func:`as_video`, on top
  of one frame source per format (:mod:`.source`, :mod:`.ffmpeg_source`,
  :mod:`.gif_source`, :mod:`.image_sources`, :mod:`.tiff_source`);
* :mod:`.frames` - :func:`to_rgb8`, any frame to ``(H, W, 3) uint8``;
* :mod:`.frame_subset` - :class:`FrameSubset`, some frames of a video as a lazy video;
* :mod:`.palette`, :mod:`.masks` - label colours and :func:`read_mask`;
* :mod:`.export` - :func:`write_indexed_png`, :func:`write_video`, :func:`overlay`,
  :func:`overlay_frames`;
* :mod:`.atomic` - temp file + ``os.replace`` writes, :func:`write_json_atomic`;
* :mod:`.tracks_csv` - point/track CSV files.

All bad-input problems raise :class:`corrflow_napari.errors.InputError` with a one-line
message naming the file, the problem and what to do.
"""
from __future__ import annotations

from .atomic import write_json_atomic
from .export import overlay, overlay_frames, write_indexed_png, write_video
from .formats import (
    CLIP_EXTENSIONS,
    FORMATS,
    GIF_EXTENSIONS,
    IMAGE_EXTENSIONS,
    READER_EXTENSIONS,
    TIFF_EXTENSIONS,
    VIDEO_EXTENSIONS,
    file_format,
    is_frame_folder,
)
from .frames import to_rgb8
from .masks import read_mask
from .palette import davis_palette
from .tracks_csv import read_points_csv, write_tracks_csv
from .video import Video, as_video, open_video

__all__ = [
    "Video",
    "open_video",
    "as_video",
    "read_mask",
    "write_indexed_png",
    "davis_palette",
    "write_video",
    "overlay",
    "overlay_frames",
    "to_rgb8",
    "write_json_atomic",
    "FORMATS",
    "VIDEO_EXTENSIONS",
    "GIF_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "CLIP_EXTENSIONS",
    "READER_EXTENSIONS",
    "file_format",
    "is_frame_folder",
    "read_points_csv",
    "write_tracks_csv",
]
