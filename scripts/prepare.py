"""Validate events and build the sequence store: python scripts/prepare.py [data=...] [out_dir=...]"""

import json

import hydra
from omegaconf import DictConfig

from eventseg.prepare import prepare_from_config


@hydra.main(config_path="../configs", config_name="prepare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    prepared = prepare_from_config(cfg.data, cfg.out_dir)
    print(json.dumps(prepared.report, indent=2))
    print(f"prepared data written to {cfg.out_dir}/prepared")


if __name__ == "__main__":
    main()
