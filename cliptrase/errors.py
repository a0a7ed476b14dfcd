"""The errors a user can fix, their exit codes, and the one error boundary of every console script.

A *user error* is bad input the user can correct: a config key or value, a name that is not registered, a
missing or corrupt data or weights file, an unwritable output folder, a failed download. Raise one of the
:class:`UserError` subclasses below with a message that names the file or key, the value found and the fix;
the boundary (:func:`error_boundary`) then prints that message as one log line and exits with the class's
:attr:`UserError.exit_code`, without a traceback. Anything else is a programming error and keeps its
traceback.

Each subclass also derives from the builtin exception the code raised before (``ConfigError`` is a
``ValueError``, ``DataNotFoundError`` a ``FileNotFoundError``...), so ``except ValueError`` and
``pytest.raises(ValueError)`` keep working.

Exit codes (:class:`ExitCode`, the same for ``cliptrase``, ``cliptrase-eval``, ``cliptrase-table`` and every
sub-command):

====  ===============  ==========================================================================
code  name             meaning
====  ===============  ==========================================================================
0     ``OK``           everything asked for is done
1     ``INCOMPLETE``   the command ran, but some work is not done: ``data check`` found problems,
                       archives wait for a manual download, a sweep cell or reproduce step failed.
                       (An unexpected programming error also exits 1, with its traceback.)
2     ``USER_ERROR``   bad input, reported in one line: any :class:`UserError`
130   ``INTERRUPTED``  stopped by Ctrl-C / SIGTERM (128 + SIGINT, the shell convention)
====  ===============  ==========================================================================

``CLIPTRASE_DEBUG=1`` (or Hydra's ``HYDRA_FULL_ERROR=1``, or ``cliptrase --debug``) lets the exception
through, traceback included.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any

from cliptrase.paths import DEBUG_ENV

logger = logging.getLogger("cliptrase")

HYDRA_DEBUG_ENV = "HYDRA_FULL_ERROR"
"""Hydra's own switch for full tracebacks; honoured the same way."""
_TRUE = ("1", "true", "yes", "on")


class ExitCode(IntEnum):
    """Documented exit statuses of every console script (see the module docstring)."""

    OK = 0
    INCOMPLETE = 1
    USER_ERROR = 2
    INTERRUPTED = 130


class UserError(Exception):
    """Bad input the user can fix; the message names the file or key and the fix.

    Attributes:
        exit_code: the status the error boundary exits with.
    """

    exit_code: ExitCode = ExitCode.USER_ERROR

    def __str__(self) -> str:
        # KeyError would quote its message (repr); a user error reads as the sentence it is.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ConfigError(UserError, ValueError):
    """A config key or value (Hydra override, YAML file, command-line option) is invalid."""


class UnknownNameError(ConfigError, KeyError):
    """A name that is not registered or has no config: dataset, model, method, protocol, table..."""


class DataError(UserError, ValueError):
    """Data that cannot be used as it is: an empty split, an undecodable image, invalid label values."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data file or folder (data root, split file, image, label map, results folder) does not exist."""


class WeightsError(UserError, ValueError):
    """Model weights that cannot be used: not a state dict, wrong architecture, unknown name or tag."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """A weights file does not exist, or pretrained weights are neither cached nor downloadable."""


class OutputError(UserError, PermissionError):
    """An output folder or file cannot be written (permissions, read-only file system, disk full)."""


class DownloadError(UserError, RuntimeError):
    """A download or extraction failed: unreachable host, checksum mismatch, unsafe archive."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    ValueError,
    KeyError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    PermissionError,
)
"""What the boundary reports in one line: :class:`UserError`, plus the builtins that library code raised for
user input before these classes existed (with the offending key or path in the message, as docs/style.md
asks). Other exceptions (``TypeError``, ``AttributeError``, ``RuntimeError``...) are programming errors."""


def debug_enabled() -> bool:
    """Whether ``$CLIPTRASE_DEBUG`` or ``$HYDRA_FULL_ERROR`` asks for tracebacks."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in (DEBUG_ENV, HYDRA_DEBUG_ENV))


_WORKER_TRACEBACK = "Original Traceback (most recent call last):"
"""What torch's DataLoader puts into the message of an error it re-raises from a worker process."""


def message_of(err: BaseException) -> str:
    """The error's one-line message (a plain ``KeyError`` would otherwise print it quoted).

    An error raised in a data-loading worker comes back with the worker's traceback inside its message
    (torch's ``ExceptionWrapper.reraise``); its last line, less the exception name, is the message.
    """
    if isinstance(err, KeyError) and not isinstance(err, UserError) and len(err.args) == 1:
        return str(err.args[0])
    text = str(err)
    if _WORKER_TRACEBACK in text:
        last = text.rstrip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def exit_code_of(err: BaseException) -> ExitCode:
    """:attr:`UserError.exit_code`, or ``USER_ERROR`` for the builtins in :data:`USER_ERRORS`."""
    return getattr(err, "exit_code", ExitCode.USER_ERROR)


def report(err: BaseException, *, prefix: str = "") -> ExitCode:
    """Log ``err`` as one error line (after ``prefix``, e.g. the sub-command) and return its exit code."""
    logger.error("%s%s", f"{prefix}: " if prefix else "", message_of(err))
    return exit_code_of(err)


def _handle(err: BaseException, prefix: str) -> ExitCode:
    """Log a user error or an interrupt in one line; return its exit code."""
    if isinstance(err, KeyboardInterrupt):
        logger.error("%sinterrupted", f"{prefix}: " if prefix else "")
        return ExitCode.INTERRUPTED
    return report(err, prefix=prefix)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """Make SIGTERM (a scheduler's cancel, ``kill``) end the process like Ctrl-C: the boundary then prints one
    line and exits with ``INTERRUPTED``, and nothing half-written is left (writes are atomic).

    Call it once, from a console script's ``main`` (the main thread), before the work starts.
    """
    if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
        signal.signal(signal.SIGTERM, _raise_interrupt)


class BoundaryExit(SystemExit):
    """The exit of :func:`error_boundary` after it reported a user error or an interrupt in one line; its
    ``code`` is the :class:`ExitCode`. An argparse console script returns that code from ``main``
    (:func:`cliptrase.cli.console.run_console`); anywhere else it ends the process like ``SystemExit``."""


@contextmanager
def error_boundary(*, prefix: str = "", debug: bool = False) -> Iterator[None]:
    """The one error boundary of every console script: a user error or an interrupt inside it is logged as
    one line and ends the command with its exit code; anything else keeps its traceback.

    Args:
        prefix: names the command in the message (``data check``, ``reproduce paper``).
        debug: let every exception through with its traceback (``--debug``); the environment switches
            (:func:`debug_enabled`) do the same.

    Raises:
        BoundaryExit: the user error's code (or ``INTERRUPTED``) after one log line.
    """
    try:
        yield
    except (KeyboardInterrupt, *USER_ERRORS) as err:
        if debug or debug_enabled():
            raise
        raise BoundaryExit(_handle(err, prefix)) from None
