"""eventseg score run_dir=DIR data=events data.path=FILE: score new customers with a finished run
(configs/score.yaml)."""

import json

from omegaconf import DictConfig

from eventseg.apps.score import score_from_config
from eventseg.cli.app import hydra_app


@hydra_app("score")
def main(cfg: DictConfig) -> None:
    print(json.dumps(score_from_config(cfg), indent=2))
