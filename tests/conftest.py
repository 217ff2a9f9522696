"""Shared fixtures (kept small). napari's ``make_napari_viewer`` comes from napari's own
pytest plugin; pytest-xvfb provides the display."""
import numpy as np
import pytest


@pytest.fixture(scope="session")
def sample():
    """The bundled real clip: (frames (48,180,320,3) uint8, frame-0 mask (180,320))."""
    from corrflow_napari.sample_data import load_sample
    return load_sample()


@pytest.fixture(scope="session")
def small_clip(sample):
    """First 12 frames of the sample at half size (90x160): fast enough for CPU tests."""
    frames, mask = sample
    return np.ascontiguousarray(frames[:12, ::2, ::2]), np.ascontiguousarray(mask[::2, ::2])
