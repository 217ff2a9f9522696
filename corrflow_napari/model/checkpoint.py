"""One checkpoint file holds: encoder config, weights, the (16, 2) colour centroids,
inference settings (:class:`InferenceSettings` as a plain dict) and (for training)
optimiser state, step and training config.
Files are written atomically (temp file in the same folder + ``os.replace``)."""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import torch

from ..errors import InputError
from .encoder import EncoderConfig
from .features import CorrFlowModel
from .inference_settings import InferenceSettings

FORMAT = "corrflow-napari-checkpoint"
VERSION = 1


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)         # mkstemp makes 0600; give a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def stored_tensor(name: str, value: torch.Tensor, half: bool) -> torch.Tensor:
    """An encoder tensor as a file stores it: with ``half``, weights and biases in fp16
    (BatchNorm statistics and integer counters stay as they are)."""
    if half and value.is_floating_point() and name.split(".")[-1] in ("weight", "bias"):
        return value.half()
    return value


def save_checkpoint(path, model: CorrFlowModel, *, half: bool = False, **extra) -> None:
    """Write ``model`` (+ extra entries such as optimizer/step/train_config) atomically."""
    state = {k: stored_tensor(k, v, half).detach().cpu()
             for k, v in model.encoder.state_dict().items()}
    obj = {"format": FORMAT, "version": VERSION,
           "encoder_config": model.config.to_dict(), "encoder": state,
           "centroids": model.centroids.detach().cpu().float(),
           "inference": model.inference.to_dict()}
    obj.update(extra)
    atomic_torch_save(obj, path)


def read_checkpoint(path) -> dict:
    """Load a checkpoint dict, turning every failure into a one-line InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"weights file {p} does not exist; check the path "
                         "or leave --weights out to use the shipped weights.")
    if p.is_dir():
        raise InputError(f"weights path {p} is a folder; give a .pt checkpoint file.")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError) as exc:
        kind = "truncated or corrupt" if zipfile.is_zipfile(p) or p.stat().st_size > 0 else "empty"
        if not zipfile.is_zipfile(p):
            kind = "not a torch checkpoint (truncated, or a different kind of file)"
        raise InputError(f"weights file {p} is {kind}; re-copy it or train/fine-tune "
                         f"it again ({type(exc).__name__}).") from None
    except Exception as exc:  # unpickling refused (weights_only) etc.
        raise InputError(f"weights file {p} could not be read safely ({type(exc).__name__}); "
                         "it is not a corrflow-napari checkpoint.") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise InputError(f"weights file {p} is not a corrflow-napari checkpoint "
                         "(another architecture or tool); use weights saved by corrflow.")
    return obj


def model_from_checkpoint(obj: dict, source: str = "checkpoint") -> CorrFlowModel:
    """Build a CorrFlowModel from a checkpoint dict (float32 weights)."""
    try:
        inference = InferenceSettings.from_dict(obj.get("inference"))
    except InputError as exc:
        raise InputError(f"weights file {source}: {exc}") from None
    try:
        config = EncoderConfig(**obj["encoder_config"])
        model = CorrFlowModel(config, centroids=obj["centroids"].float(), inference=inference)
        model.encoder.load_state_dict({k: v.float() if v.is_floating_point() else v
                                       for k, v in obj["encoder"].items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0][:120]
        raise InputError(f"weights file {source} does not match the CorrFlow encoder "
                         f"({type(exc).__name__}: {msg}); use weights saved by corrflow.") from None
    return model
