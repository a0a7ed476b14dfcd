"""What every argparse console script does around its command: logging, SIGTERM, the error boundary."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from cliptrase.errors import BoundaryExit, error_boundary, sigterm_as_interrupt

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
        command: what to run with the parsed arguments (default: the sub-command's ``args.func``). A
            sub-command names itself in error messages with ``set_defaults(error_prefix=...)``: a string,
            or a function of the parsed arguments.
        datefmt: timestamp format of the log lines (None: logging's default, date included).

    Returns:
        The exit status (:class:`cliptrase.errors.ExitCode`).
    """
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format=LOG_FORMAT, datefmt=datefmt)
    sigterm_as_interrupt()
    return run_command(args, command, debug=debug)


def run_command(
    args: argparse.Namespace,
    command: Callable[[argparse.Namespace], int | None] | None = None,
    *,
    debug: bool = False,
) -> int:
    """Run ``command`` (default ``args.func``) inside the one error boundary; its exit status, or a user
    error's code after one log line. The sub-command names itself with ``set_defaults(error_prefix=...)``."""
    prefix = getattr(args, "error_prefix", "")
    try:
        with error_boundary(prefix=prefix(args) if callable(prefix) else prefix, debug=debug):
            return int((command or args.func)(args) or 0)
    except BoundaryExit as stop:
        return int(stop.code)
