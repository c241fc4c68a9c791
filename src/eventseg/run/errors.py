"""One base class for mistakes a user can fix (bad input, bad settings, a foreign run folder).

The command-line scripts print these as one line with the fix and exit with status 2; any
other exception is a bug in eventseg and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Something in the user's input or config is wrong; the message says what and how to fix it."""


class ConfigError(UserError):
    """A setting is invalid or cannot work on this machine."""


class RunError(UserError):
    """A run folder is locked by another run, incomplete, or its files do not match its manifest."""
