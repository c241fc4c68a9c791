"""eventseg lookalike run_dir=DIR seeds=FILE|top:<column>:<share> k=N [name=...]: a lookalike audience
from a finished run (configs/lookalike.yaml)."""

import json

from omegaconf import DictConfig

from eventseg.apps.lookalike import lookalike_from_config
from eventseg.cli.app import hydra_app


@hydra_app("lookalike")
def main(cfg: DictConfig) -> None:
    print(json.dumps(lookalike_from_config(cfg), indent=2))
