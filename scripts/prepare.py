"""Validate events and build the sequence store: python scripts/prepare.py [data=...] [out_dir=...]"""

import json

from omegaconf import DictConfig

from eventseg.cli import hydra_app
from eventseg.prepare import prepare_from_config


@hydra_app("prepare")
def main(cfg: DictConfig) -> None:
    prepared = prepare_from_config(cfg.data, cfg.out_dir)
    print(json.dumps(prepared.report, indent=2))
    print(f"prepared data written to {cfg.out_dir}/prepared")


if __name__ == "__main__":
    main()
