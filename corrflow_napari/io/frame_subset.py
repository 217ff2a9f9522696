"""Some frames of a video, as a video of their own (nothing is decoded until asked)."""
from __future__ import annotations

import numpy as np


class FrameSubset:
    """Frames ``times`` of ``video`` (in that order) as a lazy ``(T, H, W, 3)`` video:
    ``shape``, ``len``, ``subset[i]`` (frame ``times[i]``, 0 <= i < T, else IndexError)
    and the video's ``fps`` (None when it has none)."""

    def __init__(self, video, times):
        self.video, self.times = video, [int(t) for t in times]
        self.shape = (len(self.times),) + tuple(video.shape[1:])
        self.fps = getattr(video, "fps", None)

    def __len__(self) -> int:
        return len(self.times)

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self.times):
            raise IndexError(i)
        return np.asarray(self.video[self.times[i]])
