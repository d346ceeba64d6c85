"""Exception hierarchy. Only ``cli.py`` turns these into exit codes."""

from __future__ import annotations


class RingfinderError(Exception):
    """Base class of every error ringfinder raises on purpose."""

    exit_code = 1


class ConfigError(RingfinderError, ValueError):
    """The config file or a command-line option is wrong (exit 2)."""

    exit_code = 2


class InputError(RingfinderError, ValueError):
    """An input file or query cannot be used (exit 1)."""

    exit_code = 1
