"""One propagation run's edit of a napari Labels layer, and telling painted frames from
propagated ones afterwards. Qt-free (napari layer API only; no viewer needed).

:class:`LabelsEdit` writes frames as they arrive (never a keyframe), blocks painting
meanwhile and records the whole run as ONE undo step; it remembers a fingerprint of each
frame it wrote in ``layer.metadata`` so that :func:`detect_keyframes` does not take a
propagated frame for one the user painted.
"""
from __future__ import annotations

import hashlib

import numpy as np

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


def record_undo_step(layer, atoms: list) -> None:
    """Record ``atoms`` ((index tuple, old, new) per changed frame, already written into
    ``layer.data``) as ONE undo step of the Labels layer.

    The only use of napari's private undo API (``Labels._save_history``) in the package.
    """
    with layer.block_history():
        for atom in atoms:
            layer._save_history(atom)


class LabelsEdit:
    """Frames written into a (T, H, W) Labels ``layer`` during one run.

    Painting is disabled from construction until :meth:`finish`; frames in ``keyframes``
    are never overwritten.
    """

    def __init__(self, layer, keyframes):
        self.layer = layer
        self.keys = set(int(k) for k in keyframes)
        self.atoms: list = []                  # ((t,), old, new) per written frame
        self.hashes: dict[int, str] = {}
        self.committing = False                # True while the undo step is recorded
        self._mode, self._editable = layer.mode, layer.editable
        layer.editable = False                 # no painting while frames are written

    @property
    def n_written(self) -> int:
        return len(self.atoms)

    def write(self, t: int, labels) -> bool:
        """Write frame ``t`` ((H, W) ids); False (nothing written) for a keyframe."""
        if t in self.keys:
            return False
        layer = self.layer
        new = np.asarray(labels).astype(layer.data.dtype, copy=False)
        old = np.array(layer.data[t], copy=True)
        layer.data[t] = new
        self.atoms.append(((t,), old, new))
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
        layer.editable = self._editable
        try:
            layer.mode = self._mode
        except Exception:   # pragma: no cover - a mode the layer no longer accepts
            pass
        layer.refresh()
