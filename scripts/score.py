"""Score new customers with a finished run: python scripts/score.py run_dir=DIR data=events data.path=FILE"""

import json

from omegaconf import DictConfig

from eventseg.cli import hydra_app
from eventseg.score import score_from_config


@hydra_app("score")
def main(cfg: DictConfig) -> None:
    print(json.dumps(score_from_config(cfg), indent=2))


if __name__ == "__main__":
    main()
