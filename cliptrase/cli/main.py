"""The ``cliptrase`` console script: ``predict``, ``data`` (prepare/check datasets) and more.

Errors a user can fix (bad names, missing files, bad values) are reported in one line, without a
traceback, with the exit codes of :mod:`cliptrase.errors`; ``--debug`` (or ``CLIPTRASE_DEBUG=1``) shows the
traceback.
"""

from __future__ import annotations

import argparse
import sys

from cliptrase import __version__
from cliptrase.cli.console import run_console


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    from cliptrase.cli import data, models, predict, reproduce, table

    parser = argparse.ArgumentParser(prog="cliptrase", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cliptrase {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    predict.register(sub)
    data.register(sub)
    models.register(sub)
    table.register(sub)
    reproduce.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_console(build_parser(), argv, datefmt="%H:%M:%S")


if __name__ == "__main__":
    sys.exit(main())
