"""Score new customers with a finished run: python scripts/score.py run_dir=DIR data=events data.path=FILE"""

import json

import hydra
from omegaconf import DictConfig

from eventseg.score import score_from_config


@hydra.main(config_path="../configs", config_name="score", version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(json.dumps(score_from_config(cfg), indent=2))


if __name__ == "__main__":
    main()
