"""File-system checks shared by the CLIs."""

from __future__ import annotations

import os
import time
from pathlib import Path


def ensure_writable(folder: Path, what: str, fix: str, *, shown: Path | None = None) -> None:
    """Create ``folder`` and write and remove a probe file there, before any long work starts.

    Args:
        folder: the directory that must be writable.
        what: what it is, for the message (``results directory``, ``data root``).
        fix: what the user should do, for the message.
        shown: the path to name in the message when it is not ``folder`` itself (e.g. the root above it).

    Raises:
        PermissionError: one line naming the folder, the reason and the fix.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_probe_{os.getpid()}_{time.time_ns()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise PermissionError(f"{what} {shown or folder} is not writable ({reason}); {fix}") from None
