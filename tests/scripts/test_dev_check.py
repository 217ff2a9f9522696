"""scripts/dev_check.py: the learned-alone copy of a checkpoint (no evaluation run here)."""
import torch

from corrflow_napari.model import SHIPPED_WEIGHTS, load_model
from corrflow_napari.model.checkpoint import read_checkpoint

from .load import load_script


def test_alone_copy_changes_only_the_readout(tmp_path):
    dev_check = load_script("dev_check")
    path = dev_check.alone_copy(str(SHIPPED_WEIGHTS), tmp_path)
    assert path.parent == tmp_path and path.name.endswith("-alone.pt")
    shipped, copy = read_checkpoint(SHIPPED_WEIGHTS), read_checkpoint(path)
    assert copy["inference"] == {**shipped["inference"], "lab_mix": 0.0, "temperature": 1.0}
    assert shipped["inference"]["lab_mix"] > 0          # the copy differs from the file
    assert all(torch.equal(shipped["encoder"][k], copy["encoder"][k]) for k in shipped["encoder"])
    model = load_model(str(path), device="cpu")
    assert [g.weight for g in model.affinity_groups()] == [1.0]   # one group: no mixture
    assert model.affinity_groups()[0].temperature == 1.0
    mtime = path.stat().st_mtime_ns                     # written once, then reused
    assert dev_check.alone_copy(str(SHIPPED_WEIGHTS), tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
