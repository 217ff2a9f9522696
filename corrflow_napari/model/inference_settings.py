"""How a feature extractor's features are made and matched at inference.

The settings travel with the weights: a checkpoint stores them as a plain dict
(:meth:`InferenceSettings.to_dict`) and :meth:`InferenceSettings.from_dict` reads it back.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import InputError
from ..options import option

METRICS = ("dot", "negsqdist")


@dataclass(frozen=True)
class InferenceSettings:
    """Affinity, feature post-processing and the Lab-colour mixture of one model.

    metric, temperature: the attention's logit (``dot``: <q, r>; ``negsqdist``:
    -|q - r|^2), divided by ``temperature``. normalize: L2-normalise the features.
    lab_weight: append ``lab_weight`` x Lab colour / 100 (4x4 averages) to the features
    (0: none). frame_bn: BatchNorm normalises each frame with its own statistics instead
    of the running ones; bn_frames (with frame_bn, when frames are encoded as one video,
    as propagation does): the statistics of this many evenly spaced frames of the video,
    interpolated linearly in time for every frame (folded into the convolutions: one pass
    per layer fewer; 0: each frame its own). lab_mix: weight of the Lab-colour affinity
    in the attention mixture (needs ``lab_weight`` > 0; see
    ``FeatureExtractor.affinity_groups``).
    """

    metric: str = "dot"
    temperature: float = 1.0
    normalize: bool = False
    lab_weight: float = 0.0
    frame_bn: bool = False
    bn_frames: int = 5
    lab_mix: float = field(default=0.0, metadata=option(
        "weight of the Lab-colour affinity mixed into the learned one (0: learned only, "
        "1: Lab colour only; weights without Lab channels ignore it)",
        minimum=0.0, maximum=1.0))

    def __post_init__(self):
        if self.metric not in METRICS:
            raise InputError(f"unknown metric {self.metric!r}; use one of {', '.join(METRICS)}.")
        if not self.temperature > 0:
            raise InputError(f"temperature must be > 0, got {self.temperature}.")
        if self.bn_frames < 0:
            raise InputError(f"bn_frames must be >= 0, got {self.bn_frames}.")
        if self.lab_weight < 0:
            raise InputError(f"lab_weight must be >= 0, got {self.lab_weight}.")
        if not 0 <= self.lab_mix <= 1:
            raise InputError(f"lab_mix must be in 0..1, got {self.lab_mix}.")

    def to_dict(self) -> dict:
        """Plain dict of builtins, as stored in checkpoints."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> InferenceSettings:
        """Settings from a (checkpoint) dict; missing keys take the defaults, values are
        converted to each field's type, unknown keys raise InputError."""
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise InputError(f"inference settings must be a dict, not {type(values).__name__}.")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(f"unknown inference setting(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(known)} (written by a newer corrflow-napari?).")
        convert = {"str": str, "float": float, "bool": bool, "int": int}
        try:
            return cls(**{k: convert[known[k].type](v) for k, v in values.items()})
        except InputError:
            raise
        except (TypeError, ValueError) as exc:
            raise InputError(f"invalid inference settings {values} ({exc}).") from None
