"""Load a trained model from its checkpoint alone: weights, hyperparameters, schema, encoders."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from eventseg.data.encoders import EventEncoders
from eventseg.errors import UserError


class CheckpointError(UserError):
    """The file is missing, unreadable, or not an eventseg checkpoint."""


@dataclass
class TrainedModel:
    model: "SequenceAutoencoder"  # noqa: F821 - imported lazily, see load_checkpoint
    encoders: EventEncoders
    max_len: int
    path: Path


def data_state(encoders: EventEncoders, max_len: int) -> dict:
    """What a checkpoint carries so that scoring needs no other file."""
    return {"encoders": encoders.to_dict(), "max_len": int(max_len)}


def read_run_identity(path: str | os.PathLike) -> dict | None:
    """The identity `RunIdentity` stored in a checkpoint (None for checkpoints without one)."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    return raw.get("eventseg_run") if isinstance(raw, dict) else None


def run_checkpoint(run_dir: str | os.PathLike, which: str = "best_checkpoint") -> Path:
    """The checkpoint a run's train_metrics.json names, resolved against the run folder."""
    import json

    run_dir = Path(run_dir)
    metrics = run_dir / "train_metrics.json"
    if not metrics.exists():
        raise CheckpointError(f"{run_dir} holds no trained model (no train_metrics.json): run scripts/pipeline.py first")
    name = json.loads(metrics.read_text()).get(which)
    if not name:
        raise CheckpointError(f"{metrics} names no {which}: training saved no checkpoint (is callbacks.model_checkpoint set?)")
    path = Path(name)
    return path if path.is_absolute() else run_dir / path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> TrainedModel:
    from eventseg.models.autoencoder import SequenceAutoencoder

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (corrupt, truncated or another format): {err}"
        ) from None
    state = raw.get("hyper_parameters", {}).get("data_state") if isinstance(raw, dict) else None
    if not state or "encoders" not in state or "state_dict" not in raw:
        raise CheckpointError(
            f"{path} is a PyTorch file but not an eventseg checkpoint (no encoders inside); "
            "pass a checkpoint written by scripts/train.py"
        )
    model = SequenceAutoencoder.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    model.eval()
    return TrainedModel(model=model, encoders=EventEncoders.from_dict(state["encoders"]), max_len=int(state["max_len"]), path=path)
