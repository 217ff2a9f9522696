"""Helpers shared by the viewer tests of the widgets."""
import numpy as np

from corrflow_napari.model.cache import LAB
from corrflow_napari.widgets import PropagateWidget

WAIT_MS = 90_000


def add_clip(viewer, small_clip):
    """The small clip as an RGB Image layer and a Labels layer painted on frame 0."""
    frames, mask = small_clip
    image = viewer.add_image(frames, rgb=True, name="clip")
    data = np.zeros(frames.shape[:3], np.uint8)
    data[0] = mask
    labels = viewer.add_labels(data, name="labels")
    return image, labels


def propagate_widget(viewer):
    """A docked Propagate widget on the Lab baseline and the CPU."""
    w = PropagateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Propagate labels")
    w.weights.set_value(LAB)
    w.device.setCurrentText("cpu")
    return w


def wait_done(qtbot, w):
    qtbot.waitUntil(lambda: not w.running, timeout=WAIT_MS)


def n_records():
    from napari.utils.notifications import notification_manager
    return len(notification_manager.records)


def error_messages(start):
    """The error notifications since record ``start``."""
    from napari.utils.notifications import NotificationSeverity, notification_manager
    return [str(n.message) for n in notification_manager.records[start:]
            if n.severity == NotificationSeverity.ERROR]
