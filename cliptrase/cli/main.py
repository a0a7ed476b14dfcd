"""The ``cliptrase`` console script: ``predict``, ``data`` (prepare/check datasets) and more.

Errors a user can fix (bad names, missing files, bad values) are reported in one line, without a
traceback, and exit with status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cliptrase import __version__

logger = logging.getLogger("cliptrase")

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    from cliptrase.cli import data, predict, reproduce, table

    parser = argparse.ArgumentParser(prog="cliptrase", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cliptrase {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    predict.register(sub)
    data.register(sub)
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
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        logger.error("%s", msg)
        return 2


if __name__ == "__main__":
    sys.exit(main())
