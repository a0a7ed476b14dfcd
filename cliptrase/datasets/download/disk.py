"""Disk space and writability of the data root, checked before anything is fetched."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from cliptrase.datasets.download.catalogue import DOWNLOADS_DIR
from cliptrase.errors import DownloadError
from cliptrase.paths import FREE_BYTES_ENV
from cliptrase.utils import fs

FreeBytes = Callable[[Path], int]


class DiskSpaceError(DownloadError):
    """Not enough free space at the root for what is about to be fetched."""


def human_bytes(num: float) -> str:
    """``1.23 GB`` style (decimal units, as download pages quote sizes)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(num) < 1000 or unit == "GB":
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.2f} {unit}"
        num /= 1000
    return f"{num:.2f} GB"


def default_free_bytes(path: Path) -> int:
    """Free bytes on the filesystem of ``path`` (its nearest existing ancestor).

    ``$CLIPTRASE_FREE_BYTES`` overrides the measurement, so tests can simulate a full disk.
    """
    override = os.environ.get(FREE_BYTES_ENV)
    if override:
        return int(override)
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk_space(root: Path, needed: int, *, free_bytes: FreeBytes | None = None, what: str = "") -> None:
    """Raise :class:`DiskSpaceError` when fewer than ``needed`` bytes are free at ``root``."""
    free = (free_bytes or default_free_bytes)(Path(root))
    if needed > free:
        detail = f" ({what})" if what else ""
        raise DiskSpaceError(
            f"not enough disk space at {root}: need {human_bytes(needed)}{detail}, {human_bytes(free)} free; "
            "free some space or choose another --root"
        )


def ensure_writable(root: Path) -> None:
    """Create ``root/downloads`` and write a probe file there.

    Raises:
        PermissionError: The root cannot be created or written; the message says which and the fix.
    """
    fs.ensure_writable(
        Path(root) / DOWNLOADS_DIR, "data root", "choose a writable --root or fix its permissions", shown=root
    )
