"""The ``cliptrase`` console script: ``predict``, ``data`` (prepare/check datasets) and more.

Errors a user can fix (bad names, missing files, bad values) are reported in one line, without a
traceback, with the exit codes of :mod:`cliptrase.errors`; ``--debug`` (or ``CLIPTRASE_DEBUG=1``) shows the
traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cliptrase import __version__
from cliptrase.errors import call_guarded, sigterm_as_interrupt


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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    sigterm_as_interrupt()
    return call_guarded(args.func, args, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
