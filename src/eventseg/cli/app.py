"""What every command does around its Hydra task: quiet logs, one-line user errors, exit status 2.

`hydra_app` replaces `@hydra.main` so a user mistake (a `UserError`, a missing file, an unset
mandatory value) prints `error: <what and how to fix>` instead of Hydra's long traceback, and
third-party tips and deprecation chatter stay out of a run's log.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import warnings
from typing import Callable, Sequence

from eventseg.run.config import CONFIG_DIR, check_moved_settings
from eventseg.run.errors import UserError

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


@contextlib.contextmanager
def user_errors_exit():
    """A user mistake inside prints its one line and exits with status 2; a bug keeps its traceback."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - sorted into user errors vs bugs below
        message = user_error_message(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def hydra_app(config_name: str, moved: dict[str, str] | None = None) -> Callable:
    """`@hydra_app("pipeline")` on a command's `main(cfg)`: Hydra composition + the behaviour above.

    The decorated `main` takes the command's overrides (`["out_dir=...", ...]`). Hydra reads them
    from `sys.argv`, so they stand there while it composes; the task itself sees the whole command
    line again, because a DDP launch re-runs `sys.argv` once per extra device. `moved`: old key ->
    new key of settings that moved; an override of an old one fails naming the new one, before
    Hydra composes.
    """
    import hydra

    def decorate(task: Callable) -> Callable:
        # here, after the command module's imports: importing lightning turns its deprecation warnings back on
        quiet_third_party_logs()

        @functools.wraps(task)
        def launch(overrides: Sequence[str]) -> None:
            command_line = sys.argv

            @functools.wraps(task)
            def guarded(cfg):
                sys.argv = command_line
                with user_errors_exit():
                    return task(cfg)

            with user_errors_exit():
                check_moved_settings(overrides, moved or {})
            sys.argv = [command_line[0], *overrides]
            try:
                hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(guarded)()
            finally:
                sys.argv = command_line

        return launch

    return decorate
