"""The ``antinex`` command: one entry point, a subcommand per part of the pipeline."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from antinex import __version__, logs
from antinex.options import (
    EXIT_FAILURE,
    EXIT_USAGE,
    RuntimeFailure,
    UsageError,
    add_flag,
)

# Each module has ``register(subparsers)``, which adds its parser and sets ``run``.
SUBCOMMANDS = (
    "capture.cli",
    "stream_processor.cli",
    "models.cli",
    "lab.cli",
    "antinex.demo",
    "antinex.broker_cli",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # exit 2 with one line, as argparse does, no usage
        self.exit(EXIT_USAGE, f"antinex: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="antinex",
        description="Streaming packet classifier: capture packets, publish records to Kafka, "
        "score them with a Keras model, publish alerts.",
    )
    parser.add_argument("--version", action="version", version=f"antinex {__version__}")
    add_flag(
        parser,
        "--log-level",
        default="info",
        help="Log level",
        choices=["debug", "info", "warning", "error"],
    )
    add_flag(parser, "--log-format", default="text", help="Log format", choices=["text", "json"])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:
        print(f"antinex: {err}", file=sys.stderr)
        return EXIT_USAGE
    logs.setup(args.log_level, args.log_format)
    try:
        return int(args.run(args) or 0)
    except UsageError as err:
        print(f"antinex: {err}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeFailure as err:
        print(f"antinex: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        logging.getLogger("antinex").info("interrupted")
        return 0


if __name__ == "__main__":
    sys.exit(main())
