"""Command-line flags that each have an ``ANTINEX_*`` environment variable twin."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad flags or bad input: the message is one sentence for the user; exit code 2."""


class RuntimeFailure(Exception):
    """Something the command needs failed at run time; exit code 1."""


def env_name(flag: str, scope: str | None = None) -> str:
    """``--metrics-port`` → ``ANTINEX_METRICS_PORT``; with scope ``sensor``,
    ``ANTINEX_SENSOR_METRICS_PORT``."""
    prefix = f"ANTINEX_{scope.upper()}_" if scope else "ANTINEX_"
    return prefix + flag.lstrip("-").replace("-", "_").upper()


def add_flag(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    help: str,
    scope: str | None = None,
    default: Any = None,
    type: Callable[[str], Any] | None = None,
    choices: list[str] | None = None,
    switch: bool = False,
    required: bool = False,
) -> None:
    """Add ``flag`` whose default comes from its environment twin when that is set.

    A switch is off unless given; its twin turns it on with 1/true/yes.
    """
    env = env_name(flag, scope)
    raw = os.environ.get(env)
    dest = flag.lstrip("-").replace("-", "_")
    if switch:
        on = raw is not None and raw.strip().lower() in ("1", "true", "yes", "on")
        parser.add_argument(
            flag, dest=dest, action="store_true", default=on, help=f"{help} [env {env}]"
        )
        return
    if raw is not None:
        try:
            default = type(raw) if type else raw
        except (TypeError, ValueError) as err:
            raise UsageError(f"environment variable {env}={raw!r} is not valid: {err}") from err
        required = False
    shown = f" (default: {default})" if default not in (None, "") else ""
    parser.add_argument(
        flag,
        dest=dest,
        default=default,
        type=type or str,
        choices=choices,
        required=required,
        help=f"{help}{shown} [env {env}]",
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of zero or more")
    return value
