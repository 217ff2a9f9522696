"""Shared fixtures (kept small). napari's ``make_napari_viewer`` comes from napari's own
pytest plugin; pytest-xvfb provides the display."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as the package does, before torch loads

import numpy as np  # noqa: E402
import pytest  # noqa: E402


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


@pytest.fixture(scope="session")
def lab():
    """The no-learning Lab-colour feature extractor on the CPU."""
    from corrflow_napari.model import load_model
    return load_model("lab", device="cpu")


def _smooth_texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture (H, W, 3) float in [0, 255], features ~8 px wide."""
    from skimage.transform import resize
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    return resize(small, (h, w), order=3).clip(0, 255)


@pytest.fixture(scope="session")
def texture():
    """``texture(h, w, seed=0)`` -> a smooth random colour texture (H, W, 3) float."""
    return _smooth_texture


@pytest.fixture
def batched_encoding(lab, monkeypatch):
    """The accelerators' batched encoding (``FrameEncoder.plan``) made to happen on the
    CPU; returns the list of frames per encoder call of ``lab``, filled as it runs."""
    from corrflow_napari.feature_cache import FrameEncoder
    batches = []
    encode = type(lab).encode
    monkeypatch.setattr(type(lab), "encode", lambda self, x: batches.append(len(x)) or
                        encode(self, x))
    monkeypatch.setattr(FrameEncoder, "unbatched", ())
    return batches
