"""napari dock widgets (thin: they gather inputs and call the core in worker threads)."""
from .finetune import FinetuneWidget
from .propagate import PropagateWidget
from .track import TrackWidget

__all__ = ["PropagateWidget", "TrackWidget", "FinetuneWidget"]
