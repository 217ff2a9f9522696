"""One propagation run's edit of a napari Labels layer, and telling painted frames from
propagated ones afterwards. Qt-free (napari layer API only; no viewer needed).

:class:`LabelsEdit` writes frames as they arrive (never a keyframe), keeps the layer from
being painted meanwhile (:class:`PaintLock`) and records the whole run as ONE undo step,
after every earlier step; it remembers a fingerprint of each frame it wrote in
``layer.metadata`` so that :func:`detect_keyframes` does not take a propagated frame for
one the user painted (:func:`mark_written` does the same for labels loaded from disk);
:func:`parse_keyframes` reads a typed keyframe list.
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..errors import InputError

#: layer.metadata key: {frame: set of fingerprints of label frames a run wrote}
WRITTEN_KEY = "corrflow_propagated"


def fingerprint(frame) -> str:
    """A short hash of one frame's values and dtype."""
    f = np.ascontiguousarray(frame)
    return f"{f.dtype.str}:" + hashlib.blake2b(f.tobytes(), digest_size=8).hexdigest()


def detect_keyframes(layer) -> list[int]:
    """Frames the user painted: any non-zero label, unless the frame holds exactly what a
    propagation run wrote there (so propagated frames are not keyframes, but a frame
    the user corrected afterwards is). ``layer``: anything with a (T, H, W) ``.data`` and
    a ``.metadata`` dict."""
    written = layer.metadata.get(WRITTEN_KEY, {})
    keys = []
    data = layer.data
    for t in range(data.shape[0]):
        frame = np.asarray(data[t])
        if not frame.any():
            continue
        if t in written and fingerprint(frame) in written[t]:
            continue
        keys.append(t)
    return keys


def parse_keyframes(text: str, n_frames: int) -> list[int]:
    """Frame numbers from text like ``"0, 40"`` (commas, semicolons or spaces)."""
    keys = set()
    for part in text.replace(";", ",").replace(" ", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            raise InputError(f"keyframes: '{part}' is not a frame number; list frames like "
                             "'0, 40'.")
        try:
            t = int(part)
        except ValueError:
            raise InputError(f"keyframes: '{part}' is not a frame number; list frames like "
                             "'0, 40'.") from None
        if not 0 <= t < n_frames:
            raise InputError(f"keyframe {t} is out of range: the video has {n_frames} frames "
                             f"(0..{n_frames - 1}).")
        keys.add(t)
    return sorted(keys)



def record_undo_step(layer, atoms: list) -> None:
    """Record ``atoms`` ((index tuple, old, new) per changed frame, already written into
    ``layer.data``) as ONE undo step of the Labels layer.

    The only use of napari's private undo API (``Labels._save_history``) in the package.
    """
    with layer.block_history():
        for atom in atoms:
            layer._save_history(atom)


#: Labels modes that change the data (napari's paint brush, eraser, fill bucket, polygon)
EDIT_MODES = frozenset({"paint", "erase", "fill", "polygon"})


class PaintLock:
    """Keeps a Labels ``layer`` from being edited in the viewer until :meth:`release`.

    The layer goes to pan/zoom mode and any later switch to an editing mode (toolbar
    button, shortcut, ``layer.mode = ...``) is turned back at once, calling
    ``on_refused()``. Unlike ``layer.editable = False``, which makes napari clear the
    layer's undo history, this leaves every earlier undo step in place.
    """

    def __init__(self, layer, on_refused=None):
        self.layer, self._on_refused = layer, on_refused
        self.mode = str(layer.mode)                     # restored by release()
        if self.mode in EDIT_MODES:
            layer.mode = "pan_zoom"
        # last: the layer controls see the refused mode first, then the pan/zoom it
        # is turned back to, so their buttons end up showing the mode the layer has
        layer.events.mode.connect(self._on_mode, position="last")
        self.active = True

    def _on_mode(self, event) -> None:
        if self.active and str(event.mode) in EDIT_MODES:
            self.layer.mode = "pan_zoom"
            if self._on_refused is not None:
                self._on_refused()

    def release(self) -> None:
        """Allow editing again and restore the mode the layer had."""
        if not self.active:
            return
        self.active = False
        self.layer.events.mode.disconnect(self._on_mode)
        try:
            self.layer.mode = self.mode
        except Exception:   # pragma: no cover - a mode the layer no longer accepts
            pass


class LabelsEdit:
    """Frames written into a (T, H, W) Labels ``layer`` during one run.

    Painting is refused from construction until :meth:`finish` (:class:`PaintLock`;
    ``on_refused`` is called when the user tries); frames in ``keyframes`` are never
    overwritten.
    """

    def __init__(self, layer, keyframes, on_refused=None):
        self.layer = layer
        self.keys = set(int(k) for k in keyframes)
        self.atoms: list = []                  # ((t, rows, cols), old, new) per changed frame
        self.hashes: dict[int, str] = {}
        self.committing = False                # True while the undo step is recorded
        self.lock = PaintLock(layer, on_refused)

    @property
    def n_written(self) -> int:
        return len(self.hashes)

    def write(self, t: int, labels) -> bool:
        """Write frame ``t`` ((H, W) ids); False (nothing written) for a keyframe."""
        if t in self.keys:
            return False
        layer = self.layer
        new = np.asarray(labels).astype(layer.data.dtype, copy=False)
        old = np.asarray(layer.data[t])
        changed = old != new
        if changed.any():       # the undo step keeps the box around the changes only
            ys, xs = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
            box = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
            old = old[box]
            # an empty (uniform) box is remembered as its one value, which undo broadcasts
            old = old.flat[0].copy() if not (old != old.flat[0]).any() else old.copy()
            self.atoms.append(((t,) + box, old, new[box].copy()))
        layer.data[t] = new
        self.hashes[t] = fingerprint(new)
        return True

    def finish(self) -> None:
        """Remember what was written, record it as one undo step, allow painting again."""
        layer = self.layer
        written = layer.metadata.setdefault(WRITTEN_KEY, {})
        for t, h in self.hashes.items():
            written.setdefault(t, set()).add(h)
        if self.atoms:
            self.committing = True
            try:
                record_undo_step(layer, self.atoms)
            finally:
                self.committing = False
        self.lock.release()
        layer.refresh()


def mark_written(layer, frames) -> None:
    """Mark the current content of ``frames`` of ``layer`` as propagated (not painted),
    e.g. for labels loaded from a propagation's output: :func:`detect_keyframes` then
    skips them until the user changes them."""
    written = layer.metadata.setdefault(WRITTEN_KEY, {})
    for t in frames:
        written.setdefault(int(t), set()).add(fingerprint(np.asarray(layer.data[int(t)])))


def unmark_written(layer, frames) -> None:
    """Take ``frames`` of ``layer`` as the user's own from now on (keyframes for
    :func:`detect_keyframes`), e.g. a propagated frame the user re-propagates from as it
    is."""
    written = layer.metadata.get(WRITTEN_KEY, {})
    for t in frames:
        written.pop(int(t), None)
