"""The feature cache a dock widget keeps between runs: one
:class:`~corrflow_napari.feature_cache.FeatureCache` for the video of one Image layer,
so that a re-run after a correction skips the encoder (and the engine reuses the chains
the correction did not change). Qt-free.

The cache is replaced (the old one and its memory dropped) when the Image layer, its
pixels, the weights (path or file contents), the device or the working size (``scale``,
``max_size``) change; the cache's own keys (model hash, encoder input size) would never
serve stale features anyway, this only frees what can no longer be used.
"""
from __future__ import annotations

import os

from ..feature_cache import FeatureCache


def _weights_key(weights) -> tuple:
    """The weights choice, with the file's size and time when it is a file (a fine-tuned
    checkpoint written again under the same name is new weights)."""
    w = str(weights)
    try:
        st = os.stat(w)
    except (OSError, ValueError):
        return (w,)
    return (w, st.st_size, st.st_mtime_ns)


class LayerFeatureCache:
    """``get(layer, weights, device, settings)`` -> ``(cache, video_key)`` for a run;
    ``forget(layer)`` when the layer goes away or its data changes."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = max_bytes                # None: the cache's default
        self.cache: FeatureCache | None = None
        self.key: tuple | None = None

    def get(self, layer, weights, device, settings) -> tuple[FeatureCache, tuple]:
        key = (id(layer), _weights_key(weights), str(device),
               getattr(settings, "scale", None), getattr(settings, "max_size", None))
        if key != self.key:
            self.drop()
            self.cache, self.key = FeatureCache(self.max_bytes), key
        return self.cache, ("napari layer", id(layer))

    def forget(self, layer) -> None:
        """Drop the cache if it belongs to ``layer``."""
        if self.key is not None and self.key[0] == id(layer):
            self.drop()

    def drop(self) -> None:
        if self.cache is not None:
            self.cache.clear()
        self.cache, self.key = None, None
