"""Load a trained model from its checkpoint alone: weights, hyperparameters, schema, encoders."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from eventseg.data.encoders import EventEncoders
from eventseg.run.errors import UserError


class CheckpointError(UserError):
    """The file is missing, unreadable, or not an eventseg checkpoint."""


@dataclass
class TrainedModel:
    model: "SequenceEncoderModule"  # noqa: F821 - imported lazily, see load_checkpoint
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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> TrainedModel:
    from eventseg.training.module import SequenceEncoderModule

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
            "pass a checkpoint written by eventseg train"
        )
    model = SequenceEncoderModule.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    model.eval()
    return TrainedModel(model=model, encoders=EventEncoders.from_dict(state["encoders"]), max_len=int(state["max_len"]), path=path)
