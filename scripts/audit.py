"""Fairness audit of a finished run: python scripts/audit.py run_dir=DIR attributes=FILE [columns=[age,income]]"""

import json

from omegaconf import DictConfig

from eventseg.audit.api import audit_from_config
from eventseg.cli import hydra_app


@hydra_app("audit")
def main(cfg: DictConfig) -> None:
    print(json.dumps(audit_from_config(cfg), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
