"""eventseg audit run_dir=DIR attributes=FILE [columns=[age,income]]: fairness audit of a
finished run (configs/audit.yaml)."""

import json

from omegaconf import DictConfig

from eventseg.apps.audit.api import audit_from_config
from eventseg.cli.app import hydra_app


@hydra_app("audit")
def main(cfg: DictConfig) -> None:
    print(json.dumps(audit_from_config(cfg), indent=2, ensure_ascii=False))
