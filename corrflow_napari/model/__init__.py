"""Model: CorrFlow encoder, inference settings, restricted attention, colour utilities,
checkpoints."""
from __future__ import annotations

from pathlib import Path

from ..device import pick_device
from ..errors import InputError
from .attention import full_attention, restricted_attention
from .checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from .encoder import CorrFlowEncoder, EncoderConfig
from .features import CorrFlowModel, FeatureExtractor, LabFeatures
from .inference_settings import InferenceSettings

SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "corrflow_default.pt"


def load_model(weights: str | Path | None = None, device: str = "auto") -> FeatureExtractor:
    """Load a feature extractor in eval mode on ``device``.

    weights: None = the shipped default weights; ``"lab"`` = the no-learning Lab-colour
    baseline; otherwise a checkpoint path written by ``corrflow train``/``finetune``.
    """
    dev = pick_device(device)
    if weights is not None and str(weights).lower() == "lab":
        return LabFeatures().to(dev).eval()
    if weights is None:
        if not SHIPPED_WEIGHTS.exists():
            raise InputError(f"shipped weights {SHIPPED_WEIGHTS} are missing from this install; "
                             "reinstall corrflow-napari, pass --weights, or use --features lab.")
        weights = SHIPPED_WEIGHTS
    model = model_from_checkpoint(read_checkpoint(weights), source=str(weights))
    model.weights_path = Path(weights).resolve()   # fine-tuning refuses to overwrite it
    return model.to(dev).eval()


__all__ = ["load_model", "restricted_attention", "full_attention", "CorrFlowEncoder",
           "EncoderConfig", "CorrFlowModel", "LabFeatures", "FeatureExtractor",
           "InferenceSettings", "save_checkpoint", "read_checkpoint", "model_from_checkpoint",
           "SHIPPED_WEIGHTS"]
