"""What every argparse console script does around its command: logging, SIGTERM, the error boundary."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from cliptrase.errors import call_guarded, sigterm_as_interrupt

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_console(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    command: Callable[[argparse.Namespace], int | None] | None = None,
    *,
    datefmt: str | None = None,
) -> int:
    """Parse ``argv``, configure logging, make SIGTERM end like Ctrl-C, run the command inside the boundary.

    Args:
        parser: the script's parser; a ``--debug`` flag, if it has one, shows tracebacks and debug logging.
        argv: arguments (None: ``sys.argv``).
        command: what to run with the parsed arguments (default: the sub-command's ``args.func``).
        datefmt: timestamp format of the log lines (None: logging's default, date included).

    Returns:
        The exit status (:class:`cliptrase.errors.ExitCode`).
    """
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format=LOG_FORMAT, datefmt=datefmt)
    sigterm_as_interrupt()
    return call_guarded(command or args.func, args, debug=debug)
