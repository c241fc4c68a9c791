"""Lookalike audience from a finished run:
python scripts/lookalike.py run_dir=DIR seeds=FILE|top:<column>:<share> k=N [name=...]"""

import json

from omegaconf import DictConfig

from eventseg.cli import hydra_app
from eventseg.lookalike import lookalike_from_config


@hydra_app("lookalike")
def main(cfg: DictConfig) -> None:
    print(json.dumps(lookalike_from_config(cfg), indent=2))


if __name__ == "__main__":
    main()
