"""Subcommands of this package (filled in as the package grows)."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands."""
