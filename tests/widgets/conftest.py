"""Fixtures of the widget tests (the viewer tests use pytest-qt and napari's
make_napari_viewer under pytest-xvfb, the real core and the Lab-colour baseline)."""
import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The CI machines are small and shared: one intra-op thread is several times faster
    than oversubscribed cores (measured 5 s vs 21 s for the fine-tune test's work)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
