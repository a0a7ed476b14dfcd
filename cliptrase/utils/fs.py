"""File-system helpers shared by the whole package: atomic writes, hard-link-or-copy, writable-folder checks.

Every file another process may read while it is written (result records, tables, manifests, converted
labels, cached text classifiers) goes through :func:`atomic_path`: readers see the old file or the new one,
never a mix, and a failed write leaves no partial file behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cliptrase.errors import OutputError

_WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})
"""errno values of a write the user fixes with space or another folder (not a missing source file)."""
_NEW_FILE_MODE = 0o666  # the umask decides, as for any new file (tempfile would force 0o600)


def _temp_name(path: Path) -> Path:
    """A hidden, unique sibling of ``path``: same directory, hence same filesystem (atomic rename)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any failure it is removed.

    The rename (``os.replace``) is atomic on POSIX and Windows. The folder must exist.

    Raises:
        OutputError: the folder is not writable (a ``PermissionError``), or the write failed for want of
            space (disk full, quota, file-size limit, read-only or failing disk); the message names the file.
    """
    path = Path(path)
    tmp = _temp_name(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE))
    except PermissionError:
        raise OutputError(
            f"cannot write in {path.parent}: permission denied; choose a writable folder"
        ) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno not in _WRITE_FAILURES or isinstance(err, OutputError):
            raise
        raise OutputError(
            f"cannot write {path} ({err.strerror}); the previous file, if any, is kept: free space or "
            "choose another folder, then re-run"
        ) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`), flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (no extra disk space), or copy it across filesystems; atomic both ways.

    The parent of ``dst`` is created. A ``dst`` that is ``src`` or has its size is kept (a re-run of a
    converter or an extraction does not copy again); any other ``dst`` is replaced.
    """
    if dst.exists() and (dst.samefile(src) or dst.stat().st_size == src.stat().st_size):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def ensure_writable(folder: Path, what: str, fix: str, *, shown: Path | None = None) -> None:
    """Create ``folder`` and write and remove a probe file there, before any long work starts.

    Args:
        folder: the directory that must be writable.
        what: what it is, for the message (``results directory``, ``data root``).
        fix: what the user should do, for the message.
        shown: the path to name in the message when it is not ``folder`` itself (e.g. the root above it).

    Raises:
        OutputError: one line naming the folder, the reason and the fix (a ``PermissionError``).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_probe_{os.getpid()}_{time.time_ns()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise OutputError(f"{what} {shown or folder} is not writable ({reason}); {fix}") from None
