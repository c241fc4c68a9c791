"""The end-to-end job: each stage is a pure function; this module only chains them."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from eventseg.train import train


def run_pipeline(cfg: DictConfig) -> dict[str, Path]:
    """prepare → train; returns the paths of what it wrote."""
    result = train(cfg)  # prepares the data first
    out = Path(cfg.out_dir)
    return {
        "prepared": out / "prepared",
        "checkpoint": result.checkpoint,
        "metrics": out / "train_metrics.json",
    }
