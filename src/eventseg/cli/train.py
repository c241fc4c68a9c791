"""eventseg train [data=...] [model=...] [trainer=...]: train the sequence encoder (configs/train.yaml)."""

import contextlib

from omegaconf import DictConfig

from eventseg.cli.app import hydra_app
from eventseg.run.config import check_cutoff, check_training_config, check_writable
from eventseg.run.manifest import RunLock
from eventseg.training.train import is_launcher_child, train


@hydra_app("train")
def main(cfg: DictConfig) -> None:
    check_writable(cfg.out_dir)
    check_training_config(cfg)
    check_cutoff(cfg.data.get("cutoff"))
    # DDP re-launches this command per extra device: only the first process holds the run's lock
    with contextlib.nullcontext() if is_launcher_child() else RunLock(cfg.out_dir):
        result = train(cfg)
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")
