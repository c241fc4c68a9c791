"""Config helpers shared by the stages: plain values for hashing, and the checks that run
before any work so a bad setting fails in a second, not after training."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from eventseg.run.errors import ConfigError

# the Hydra configs ship inside the package, so an installed eventseg finds them from any folder
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def plain(value: Any) -> Any:
    """A config subtree as plain Python (resolved), so it hashes and serialises."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_known_settings(settings, known, where: str, error: type[Exception] = ConfigError) -> None:
    """A misspelt key is an error naming it and every known key, never silently ignored."""
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise error(f"unknown {where} setting(s) {unknown}; known: {sorted(known)}")


def check_moved_settings(overrides, moved: dict[str, str]) -> None:
    """An override (`key=value`, `+key=value`, ...) of a setting that moved fails naming its new
    key, where Hydra would only say that the old key is not in the config."""
    for override in overrides:
        key, sep, value = str(override).lstrip("~+").partition("=")
        for old, new in moved.items():
            if key == old or key.startswith(f"{old}."):
                hint = f"{new}{key[len(old):]}{sep}{value}" if sep else f"{new}.<setting>=..."
                raise ConfigError(f"{old} moved to {new}: pass {hint}")


def check_writable(out_dir: str | os.PathLike) -> None:
    """Fail now, not after prepare, when the run folder cannot be written."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"out_dir={out} is not writable ({err.strerror}): choose a folder you can write to") from None


def check_training_config(cfg) -> None:
    """Model and trainer settings that would only fail after (or during) training."""
    model, trainer = cfg.get("model") or {}, cfg.get("trainer") or {}
    for key in ("embedding_dim", "d_model"):
        value = model.get(key)
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ConfigError(f"model.{key}={value!r} must be a positive integer (default embedding_dim=64)")
    epochs = trainer.get("max_epochs")
    if epochs is not None and not trainer.get("fast_dev_run") and (not isinstance(epochs, int) or epochs <= 0):
        raise ConfigError(f"trainer.max_epochs={epochs!r} must be a positive integer (default 10)")
    loader = cfg.get("loader") or {}
    for key in ("batch_size", "eval_batch_size"):
        value = loader.get(key)
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ConfigError(f"loader.{key}={value!r} must be a positive integer")
    check_accelerator(str(trainer.get("accelerator", "auto")))


def check_accelerator(accelerator: str) -> None:
    """trainer=gpu on a machine without a CUDA GPU: say which trainer to use instead."""
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accelerator} but no CUDA GPU is visible to torch "
                              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}): "
                              "use trainer=default (CPU), or install a CUDA build of torch (TORCH_SPEC=... make setup)")


def check_cutoff(cutoff) -> None:
    """A cutoff must be one wall-clock time: events are compared on their local clock."""
    if cutoff is None:
        return
    import pandas as pd

    try:
        stamp = pd.Timestamp(str(cutoff))
    except (ValueError, TypeError):
        raise ConfigError(f"data.cutoff={cutoff!r} is not a date or time: use ISO form, e.g. data.cutoff=2017-10-01") from None
    if stamp.tzinfo is not None:
        raise ConfigError(f"data.cutoff={cutoff} has a time zone: events are compared on their local wall-clock time, "
                          f"so give the cutoff without one, e.g. data.cutoff={stamp.tz_localize(None).isoformat()}")
