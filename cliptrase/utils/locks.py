"""File locks that let jobs of one experiment run side by side (processes, or nodes sharing a filesystem).

- :func:`job_lock`: one per config hash. A second identical job waits for the first, then finds its
  complete record and reuses it instead of computing everything again.
- :func:`tables_lock`: one per experiment, held while its tables are rebuilt, so two jobs finishing
  together never interleave their table files.

Locks live in ``<experiment>/.locks/`` (``filelock``: ``fcntl`` locks, released by the kernel when a
process dies, so a killed job never leaves a stale lock). On NFS they need a server with lock support
(NFSv4, or v3 with ``lockd``), which every HPC shared filesystem provides.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from cliptrase.errors import OutputError

logger = logging.getLogger(__name__)

LOCK_DIR = ".locks"
_POLL_S = 0.5


def _lock(path: Path) -> FileLock:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"cannot create the lock folder {path.parent} ({err.strerror}); the results directory must be "
            "writable: fix its permissions or set paths.results_dir=<writable dir>"
        ) from None
    return FileLock(str(path))


@contextmanager
def held(path: Path, what: str) -> Iterator[None]:
    """Hold the lock at ``path``; log once when another process holds it and this one waits."""
    lock = _lock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("waiting for %s (held by another process; lock %s)", what, path)
        lock.acquire(poll_interval=_POLL_S)
    try:
        yield
    finally:
        lock.release()


def job_lock(experiment_dir: Path, config_hash: str) -> Path:
    """Lock file of the job with ``config_hash`` in ``experiment_dir``."""
    return Path(experiment_dir) / LOCK_DIR / f"{config_hash}.lock"


def tables_lock(experiment_dir: Path) -> Path:
    """Lock file of the experiment's tables."""
    return Path(experiment_dir) / LOCK_DIR / "tables.lock"
