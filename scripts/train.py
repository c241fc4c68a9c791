"""Train the sequence autoencoder: python scripts/train.py [data=...] [model=...] [trainer=...]"""

import contextlib

from omegaconf import DictConfig

from eventseg.cli import hydra_app
from eventseg.config import check_cutoff, check_training_config, check_writable
from eventseg.runs import RunLock
from eventseg.train import is_launcher_child, train


@hydra_app("train")
def main(cfg: DictConfig) -> None:
    check_writable(cfg.out_dir)
    check_training_config(cfg)
    check_cutoff(cfg.data.get("cutoff"))
    # DDP re-launches this script per extra device: only the first process holds the run's lock
    with contextlib.nullcontext() if is_launcher_child() else RunLock(cfg.out_dir):
        result = train(cfg)
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")


if __name__ == "__main__":
    main()
