"""What every script does around its Hydra task: quiet logs, one-line user errors, exit status 2.

`hydra_app` replaces `@hydra.main` so a user mistake (a `UserError`, a missing file, an unset
mandatory value) prints `error: <what and how to fix>` instead of Hydra's long traceback, and
third-party tips and deprecation chatter stay out of a run's log.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import warnings
from typing import Callable

from eventseg.errors import UserError

EXIT_USER_ERROR = 2
_NOISY_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                  "lightning.fabric.utilities.seed", "lightning.pytorch.trainer.connectors.signal_connector")


def quiet_third_party_logs() -> None:
    """Keep tips ('try installing litmodels'), hardware banners and deprecation notices out of the log."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(hdbscan|sklearn|lightning|torch)")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*litlogger.*|.*litmodels.*")
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")


def user_error_message(err: BaseException) -> str | None:
    """The one line to show for a user mistake, or None when `err` is a bug (keep its traceback)."""
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(err, MissingMandatoryValue):
        key = getattr(err, "full_key", None) or str(err)
        return f"{key} is required and not set: pass {key}=... on the command line"
    if isinstance(err, (UserError, FileNotFoundError, NotADirectoryError, PermissionError)):
        return str(err).strip().replace("\n", "\n  ")
    return None


def hydra_app(config_name: str) -> Callable:
    """`@hydra_app("pipeline")` on a script's `main(cfg)`: Hydra composition + the behaviour above."""
    import hydra

    def decorate(task: Callable) -> Callable:
        @functools.wraps(task)
        def guarded(cfg):
            try:
                return task(cfg)
            except Exception as err:  # noqa: BLE001 - sorted into user errors vs bugs below
                message = user_error_message(err)
                if message is None:
                    raise
                print(f"error: {message}", file=sys.stderr)
                sys.exit(EXIT_USER_ERROR)

        quiet_third_party_logs()
        configs = os.path.join(os.path.dirname(os.path.abspath(inspect.getfile(task))), "..", "configs")
        return hydra.main(config_path=os.path.abspath(configs), config_name=config_name, version_base="1.3")(guarded)

    return decorate
