"""Averaging weights files (model soup): the mean of the encoder tensors, loadable,
and a clear error for files that cannot be averaged."""
import subprocess
import sys

import pytest
import torch

from corrflow_napari.errors import InputError
from corrflow_napari.model import SHIPPED_WEIGHTS, load_model, save_checkpoint
from corrflow_napari.training.weight_average import average_checkpoints, write_average


def _variant(tmp_path, name, delta, lab_mix=None):
    model = load_model(SHIPPED_WEIGHTS, device="cpu")
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(delta)
    if lab_mix is not None:
        model.inference = type(model.inference).from_dict(
            model.inference.to_dict() | {"lab_mix": lab_mix})
    path = tmp_path / f"{name}.pt"
    save_checkpoint(path, model, half=False, step=10)
    return path, model


def test_average_is_the_mean_and_loads(tmp_path):
    a, ma = _variant(tmp_path, "a", 0.01)
    b, mb = _variant(tmp_path, "b", -0.03)
    out = tmp_path / "soup.pt"
    obj = write_average([a, b], out)
    assert obj["steps"] == [10, 10]
    soup = load_model(out, device="cpu")
    name, pa = next(iter(ma.encoder.named_parameters()))
    pb = dict(mb.encoder.named_parameters())[name]
    ps = dict(soup.encoder.named_parameters())[name]
    # stored in fp16 like exported weights: equal to the fp32 mean up to fp16 rounding
    torch.testing.assert_close(ps, ((pa + pb) / 2).half().float(), rtol=0, atol=0)
    assert soup.inference == ma.inference
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert soup.features(x).shape == ma.features(x).shape


def test_average_refuses_different_settings(tmp_path):
    a, _ = _variant(tmp_path, "a", 0.0)
    b, _ = _variant(tmp_path, "b", 0.0, lab_mix=0.9)
    with pytest.raises(InputError, match="inference differs"):
        average_checkpoints([a, b])
    with pytest.raises(InputError, match="at least two"):
        average_checkpoints([a])


def test_script_one_line_error(tmp_path):
    a, _ = _variant(tmp_path, "a", 0.0)
    r = subprocess.run([sys.executable, "scripts/average_weights.py", str(a),
                        str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o.pt")],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    assert not (tmp_path / "o.pt").exists()
