"""pytest plugin: the whole suite through the code paths a GPU takes, on the CPU.

    python -m pytest -p tests.gpu_paths tests

On accelerators frames are encoded several at a time (``FrameEncoder.plan``) and the
label attention computes every tile (``PropagationSettings.skip_far`` None); CI has no
GPU, so this runs both on the CPU. The one test about the CPU's own skip is left out.
"""
import pytest

import corrflow_napari.propagation as propagation
from corrflow_napari.feature_cache import FrameEncoder

CPU_ONLY = ("test_skipping_tiles_far_from_objects_changes_nothing",)


@pytest.fixture(autouse=True)
def _gpu_paths(monkeypatch):
    attend = propagation.attend
    monkeypatch.setattr(FrameEncoder, "unbatched", ())
    monkeypatch.setattr(propagation, "attend",
                        lambda *a, skip_empty=False, **k: attend(*a, skip_empty=False, **k))


def pytest_collection_modifyitems(config, items):
    keep = [i for i in items if i.name not in CPU_ONLY]
    config.hook.pytest_deselected(items=[i for i in items if i.name in CPU_ONLY])
    items[:] = keep
