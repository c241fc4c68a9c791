"""eventseg monitor run_dir=DIR data=events data.path=EVENTS cutoffs=[d1,d2,...]: segments over
time (configs/monitor.yaml)."""

import json

from omegaconf import DictConfig

from eventseg.apps.monitor import monitor_from_config
from eventseg.cli.app import hydra_app


@hydra_app("monitor")
def main(cfg: DictConfig) -> None:
    print(json.dumps(monitor_from_config(cfg), indent=2))
