"""InferenceSettings: stored in checkpoints as a plain dict and read back unchanged;
unknown keys, bad values and the old per-attribute assignment are refused."""
from dataclasses import replace

import pytest
import torch

from corrflow_napari.errors import InputError
from corrflow_napari.model import (
    CorrFlowModel,
    EncoderConfig,
    InferenceSettings,
    load_model,
    save_checkpoint,
)
from corrflow_napari.options import options

CUSTOM = InferenceSettings(metric="negsqdist", temperature=0.07, normalize=True,
                           lab_weight=2.0, frame_bn=True, bn_frames=3, lab_mix=0.25)


def _saved(tmp_path, inference=CUSTOM):
    path = tmp_path / "w.pt"
    save_checkpoint(path, CorrFlowModel(EncoderConfig(width=0.125), inference=inference))
    return path


def test_round_trip_through_a_checkpoint(tmp_path):
    path = _saved(tmp_path)
    stored = torch.load(path, weights_only=True)["inference"]
    assert stored == {"metric": "negsqdist", "temperature": 0.07, "normalize": True,
                      "lab_weight": 2.0, "frame_bn": True, "bn_frames": 3, "lab_mix": 0.25}
    assert load_model(path, device="cpu").inference == CUSTOM


def test_missing_keys_take_defaults_and_values_are_converted(tmp_path):
    path = _saved(tmp_path)
    obj = torch.load(path, weights_only=True)
    obj["inference"] = {"metric": "dot", "normalize": 1, "temperature": 2}   # an older file
    torch.save(obj, path)
    got = load_model(path, device="cpu").inference
    assert got == InferenceSettings(normalize=True, temperature=2.0)
    assert got.normalize is True and isinstance(got.temperature, float)


def test_unknown_key_in_a_checkpoint_is_a_clear_input_error(tmp_path):
    path = _saved(tmp_path)
    obj = torch.load(path, weights_only=True)
    obj["inference"]["colour_gain"] = 2.0
    torch.save(obj, path)
    with pytest.raises(InputError, match=r"w\.pt.*unknown inference setting.*'colour_gain'"):
        load_model(path, device="cpu")


@pytest.mark.parametrize("changes, match", [
    ({"metric": "cosine"}, "unknown metric"),
    ({"temperature": 0.0}, "temperature"),
    ({"lab_weight": -1.0}, "lab_weight"),
    ({"lab_mix": 1.5}, "lab_mix"),
    ({"bn_frames": -1}, "bn_frames"),
])
def test_bad_values_are_refused(changes, match):
    with pytest.raises(InputError, match=match):
        InferenceSettings(**changes)


def test_settings_are_changed_through_the_settings_object():
    model = CorrFlowModel(EncoderConfig(width=0.125))
    with pytest.raises(AttributeError, match="model.inference"):
        model.lab_mix = 0.5                      # would otherwise be silently ignored
    model.inference = replace(model.inference, lab_mix=0.5)
    assert model.inference.lab_mix == 0.5
    with pytest.raises(TypeError, match="InferenceSettings"):
        CorrFlowModel(EncoderConfig(width=0.125), inference={"lab_mix": 0.5})


def test_lab_baseline_settings_and_user_facing_option():
    assert load_model("lab", device="cpu").inference == InferenceSettings(
        metric="negsqdist", temperature=0.05)
    assert [o.name for o in options(InferenceSettings)] == ["lab_mix"]
