"""The user's keyframe masks checked before anything runs (propagation, fine-tuning)."""
from __future__ import annotations

import numpy as np

from .errors import InputError


def check_keyframes(keyframes: dict, t_total: int, h: int, w: int) -> dict[int, np.ndarray]:
    """{t: (H, W) integer ids} checked against a (T=t_total, H=h, W=w) video: frames in
    range (negative counts from the end), the video's size, integer ids >= 0, one mask
    per frame and at least one object in all; InputError (one line) otherwise."""
    if not keyframes:
        raise InputError("no keyframe mask given; paint at least one frame (or pass --mask).")
    out = {}
    for t, m in keyframes.items():
        t = int(t)
        if not -t_total <= t < t_total:
            raise InputError(f"keyframe {t} is out of range: the video has {t_total} frames "
                             f"(0..{t_total - 1}).")
        t = t % t_total
        m = np.asarray(m)
        if m.ndim != 2:
            raise InputError(f"mask for frame {t} has shape {m.shape}, not (height, width): "
                             "give a 2-D label image of integer ids (a colour or stacked "
                             "mask is not one).")
        if m.shape != (h, w):
            raise InputError(f"mask for frame {t} is {m.shape[1]}x"
                             f"{m.shape[0]} but the video frames are {w}x{h}; "
                             "give a mask of the video's size.")
        if not np.issubdtype(m.dtype, np.integer) and m.dtype != bool:
            if not np.all(np.mod(m, 1) == 0):
                raise InputError(f"mask for frame {t} holds non-integer values; "
                                 "give integer object ids (0 = background).")
        if np.any(m < 0):
            raise InputError(f"mask for frame {t} has negative ids; use 0 for background "
                             "and 1..N for objects.")
        if t in out:
            raise InputError(f"two masks given for frame {t}; give one mask per frame.")
        out[t] = m.astype(np.int64)
    if not any(np.any(m > 0) for m in out.values()):
        raise InputError("the keyframe masks contain no object (all pixels are 0); "
                         "paint at least one object.")
    return out
