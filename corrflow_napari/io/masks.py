"""Reading label masks (indexed, grey or RGB(A) PNG/TIF) into integer object ids.

A grey mask whose only non-zero value is white (255, or 65535 in 16 bits) is a binary
mask as image editors save them: it is read as object 1, with a :class:`BinaryMaskNote`
warning (the CLI prints it as one ``corrflow: note:`` line on stderr).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError
from .formats import TIFF_EXTENSIONS
from .messages import short_error
from .palette import davis_palette, full_palette, pack_rgb
from .paths import as_path


class BinaryMaskNote(UserWarning):
    """A 0/255 (white on black) mask was read as object 1."""


#: the white of 8- and 16-bit grey images
_WHITE = (255, 65535)


def _binary_as_object_1(path: Path, a: np.ndarray) -> np.ndarray:
    """A grey mask whose only non-zero value is white -> object 1 (with a note)."""
    if a.dtype.kind not in "iu" or not a.size:
        return a
    top = int(a.max())
    if top not in _WHITE or not np.all((a == 0) | (a == top)):
        return a
    warnings.warn(f"mask {path} holds only 0 and {top} (a black and white mask): read as "
                  "object 1 on background 0", BinaryMaskNote, stacklevel=3)
    return (a == top).astype(np.int32)


def _mask_shape_check(path: Path, ids: np.ndarray, shape) -> None:
    if shape is None:
        return
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4:          # a video shape (T, H, W, 3)
        h, w = shape[1], shape[2]
    elif len(shape) >= 2:
        h, w = shape[0], shape[1]
    else:
        raise ValueError(f"shape must be (H, W), got {shape}")
    mh, mw = ids.shape
    if (mh, mw) != (h, w):
        raise InputError(f"mask {path} is {mw}x{mh} but the video frames are {w}x{h}; paint "
                         "the mask on a frame of this video or resize it to the frame size")


def _ids_from_colours(path: Path, rgb: np.ndarray, alpha: np.ndarray | None):
    """(H,W,3) uint8 colours -> (ids int32, palette (256,3) uint8)."""
    packed = pack_rgb(rgb)
    if alpha is not None:
        packed = np.where(alpha == 0, 0, packed)          # transparent = background
    flat = packed.reshape(-1)
    colours, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    inverse = inverse.reshape(packed.shape)
    nonblack = colours != 0
    dav = davis_palette(256)
    dav_packed = pack_rgb(dav)
    lut_davis = {int(c): i for i, c in enumerate(dav_packed) if i > 0}
    if all(int(c) in lut_davis for c in colours[nonblack]):
        table = np.array([0 if c == 0 else lut_davis[int(c)] for c in colours], np.int32)
        return table[inverse].astype(np.int32), dav.copy()
    n_obj = int(nonblack.sum())
    if n_obj > 255:
        raise InputError(
            f"mask {path} has {n_obj} different colours, so it looks anti-aliased or compressed "
            "(e.g. a JPEG or a smoothed brush); save the mask as an indexed PNG (one palette "
            "index per object, 0 = background) or paint it with hard edges")
    # ids 1..N by first appearance in raster order
    order = np.argsort(np.where(nonblack, first, -1), kind="stable")
    table = np.zeros(len(colours), np.int32)
    pal = davis_palette(256)
    next_id = 1
    for k in order:
        if not nonblack[k]:
            continue
        table[k] = next_id
        c = int(colours[k])
        pal[next_id] = ((c >> 16) & 255, (c >> 8) & 255, c & 255)
        next_id += 1
    return table[inverse].astype(np.int32), pal


def read_mask(path, shape=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a label mask: ``(ids (H,W) int32, palette (256,3) uint8 or None)``.

    * indexed PNG (mode "P"): the palette indices are the ids, the file's palette is
      returned (entries it lacks are filled with the DAVIS colours);
    * greyscale PNG/TIF (8/16/32-bit): the values are the ids, palette None; except a
      black and white mask (only 0 and 255 / 65535): object 1, with a
      :class:`BinaryMaskNote` warning;
    * RGB/RGBA: black (and fully transparent) is background 0; if every other colour is
      a DAVIS/VOC palette colour its DAVIS id is used, otherwise up to 255 colours get
      ids 1..N in order of first appearance (raster order) and the palette lists them;
      more colours (anti-aliasing, JPEG) is an error.

    ``shape``: the frame size ``(H, W)`` (or a video shape ``(T,H,W,3)``) the mask must
    match.
    """
    p = as_path(path)
    if not p.exists():
        raise InputError(f"mask {p} does not exist; check the path")
    if p.is_dir():
        raise InputError(f"mask {p} is a folder; give one mask image (an indexed PNG)")
    arr = None
    palette = None
    mode = None
    if p.suffix.lower() in TIFF_EXTENSIONS:
        try:
            import tifffile
            arr = np.asarray(tifffile.imread(str(p)))
            arr = np.squeeze(arr) if arr.ndim > 2 else arr
            if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
                arr = np.moveaxis(arr, 0, -1)
        except Exception:
            arr = None
    if arr is None:
        from PIL import Image
        try:
            with Image.open(p) as im:
                if im.format in ("JPEG", "MPO"):
                    raise InputError(f"mask {p} is a JPEG: its lossy compression changes the "
                                     "object ids at every edge; save the mask as a PNG "
                                     "(indexed, 0 = background)")
                im.load()
                mode = im.mode
                if mode == "P":
                    arr = np.asarray(im).astype(np.int32)
                    raw = im.getpalette() or []
                    pal = np.asarray(raw, np.uint8).reshape(-1, 3)[:256] if raw else None
                    palette = full_palette(pal)
                elif mode in ("1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
                    arr = np.asarray(im)
                elif mode == "LA":
                    arr = np.asarray(im)[..., 0]
                elif mode == "RGBA":
                    arr = np.asarray(im)
                else:
                    arr = np.asarray(im.convert("RGB"))
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"mask {p} is not a readable image ({short_error(err)}); save the "
                             "mask as a PNG (indexed, 0 = background)") from err
    if mode == "P":
        ids = arr
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[..., :3]
        alpha = arr[..., 3] if arr.shape[2] == 4 else None
        if rgb.dtype != np.uint8:
            raise InputError(f"mask {p} is a {rgb.dtype} colour image; save it as an 8-bit "
                             "indexed or RGB PNG")
        ids, palette = _ids_from_colours(p, rgb, alpha)
    elif arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 2)):
        a = arr if arr.ndim == 2 else arr[..., 0]
        if a.dtype == np.bool_:
            a = a.astype(np.int32)
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise InputError(f"mask {p} holds non-integer values; save integer object ids "
                                 "(0 = background) as an indexed or greyscale PNG")
        if a.size and a.min() < 0:
            raise InputError(f"mask {p} has negative values; object ids must be 0 (background) "
                             "or positive")
        if a.size and a.max() > np.iinfo(np.int32).max:
            raise InputError(f"mask {p} has ids too large for int32; renumber the objects")
        ids = _binary_as_object_1(p, a).astype(np.int32)
        palette = None
    else:
        raise InputError(f"mask {p} has shape {arr.shape}; expected one 2D label image - save "
                         "it as an indexed PNG")
    if ids.ndim != 2 or ids.size == 0:
        raise InputError(f"mask {p} has shape {ids.shape}; expected one non-empty 2D label image")
    _mask_shape_check(p, ids, shape)
    return np.ascontiguousarray(ids, dtype=np.int32), palette



def read_keyframe_masks(masks, frames, n_frames: int, hw, video) -> tuple[dict, np.ndarray | None]:
    """The keyframes given as ``--mask M [--mask-frame K]`` pairs on the command line:
    ``({frame: (H, W) ids}, palette of the first mask or None)``.

    masks: the mask files; frames: their frame numbers in the same order (None: one mask,
    on frame 0; negative numbers count from the end); n_frames, hw: the video's length
    and frame size (H, W); video: its name for messages. Every mask must hold an object.
    """
    if frames is None:
        if len(masks) > 1:
            raise InputError("several --mask given without --mask-frame; give one "
                             "--mask-frame per --mask, in the same order.")
        frames = [0]
    if len(frames) != len(masks):
        raise InputError(f"{len(masks)} --mask but {len(frames)} --mask-frame; give one "
                         "--mask-frame per --mask.")
    keyframes, palette = {}, None
    for path, t in zip(masks, frames):
        if not -n_frames <= t < n_frames:
            raise InputError(f"--mask-frame {t} is out of range: {video} has {n_frames} "
                             f"frames (0..{n_frames - 1}).")
        t %= n_frames
        if t in keyframes:
            raise InputError(f"two masks given for frame {t}; give one --mask per frame.")
        mask, pal = read_mask(path, shape=hw)
        if not (mask > 0).any():
            raise InputError(f"mask {path} contains no object (all pixels are 0); "
                             "paint at least one object with ids 1..N.")
        keyframes[t] = mask
        palette = palette if palette is not None else pal
    return keyframes, palette
