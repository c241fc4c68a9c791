"""Segments over time: python scripts/monitor.py run_dir=DIR data=events data.path=EVENTS cutoffs=[d1,d2,...]"""

import json

from omegaconf import DictConfig

from eventseg.cli import hydra_app
from eventseg.monitor import monitor_from_config


@hydra_app("monitor")
def main(cfg: DictConfig) -> None:
    print(json.dumps(monitor_from_config(cfg), indent=2))


if __name__ == "__main__":
    main()
