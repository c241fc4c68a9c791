"""eventseg prepare [data=...] [out_dir=...]: validate events and build the sequence store (configs/prepare.yaml)."""

import json

from omegaconf import DictConfig

from eventseg.cli.app import hydra_app
from eventseg.data.prepare import prepare_from_config


@hydra_app("prepare")
def main(cfg: DictConfig) -> None:
    prepared = prepare_from_config(cfg.data, cfg.out_dir)
    print(json.dumps(prepared.report, indent=2))
    print(f"prepared data written to {cfg.out_dir}/prepared")
