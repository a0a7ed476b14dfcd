"""Safe extraction: every member of an archive is checked (no absolute paths, no ``..``, no links leaving the
folder, no device files) and the archive is refused whole, with one line, when any member fails; it is
unpacked into a staging folder that is moved into place only when complete."""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from cliptrase.datasets.download.catalogue import Archive
from cliptrase.errors import DownloadError
from cliptrase.utils import fs

_LINK_TYPE = 0o120000  # S_IFLNK in a zip entry's external attributes
_DRIVE = re.compile(r"^[A-Za-z]:")


def _member_problem(name: str, link: str | None, is_hardlink: bool) -> str | None:
    """Why an archive member may not be extracted (None when it is safe)."""
    if not name or name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "has an absolute path"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return "climbs out of the extraction folder with '..'"
    if link is None:
        return None
    if link.startswith(("/", "\\")) or _DRIVE.match(link):
        return f"links to the absolute path {link!r}"
    base = "" if is_hardlink else posixpath.dirname(name)  # hard links are relative to the archive root
    target = posixpath.normpath(posixpath.join(base, link.replace("\\", "/")))
    if target == ".." or target.startswith("../"):
        return f"links to {link!r}, outside the extraction folder"
    return None


def _tar_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member, after checking all of them; the first unsafe one refuses the whole archive.

    Besides the per-member checks, no member may sit below a symlink member: writing through a link
    (``d -> .`` then ``d/l -> ../x``) could escape the folder although each name looks harmless.
    """
    members = tar.getmembers()
    links = {posixpath.normpath(m.name) for m in members if m.issym()}
    for member in members:
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise _UnsafeMemberError(member.name, "is a device, fifo or other special file")
        link = member.linkname if member.issym() or member.islnk() else None
        problem = _member_problem(member.name, link, member.islnk())
        parents = posixpath.normpath(member.name).split("/")[:-1]
        through = [p for p in ("/".join(parents[: i + 1]) for i in range(len(parents))) if p in links]
        if problem is None and through:
            problem = f"is written through the symlink member {through[0]!r}"
        if problem:
            raise _UnsafeMemberError(member.name, problem)
    return members


def _zip_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Every entry, after checking all of them (zip symlinks are checked like tar symlinks)."""
    infos = archive.infolist()
    for info in infos:
        is_link = (info.external_attr >> 16) & 0o170000 == _LINK_TYPE
        link = archive.read(info).decode("utf-8", "replace") if is_link else None
        problem = _member_problem(info.filename, link, False)
        if problem:
            raise _UnsafeMemberError(info.filename, problem)
    return infos


class _UnsafeMemberError(Exception):
    """An unsafe member; carries the member name and the reason."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(member, reason)
        self.member, self.reason = member, reason


def _unpack(path: Path, archive: Archive, dest: Path) -> None:
    """Unpack ``path`` into the empty folder ``dest`` after checking every member."""
    if archive.kind == "file":
        fs.link_or_copy(path, dest / archive.filename)
        return
    if archive.kind == "tar":
        with tarfile.open(path) as tar:
            members = _tar_members(tar)
            options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            for member in tqdm(members, desc=f"extract {path.name}", unit="file", disable=None):
                tar.extract(member, dest, **options)
        return
    with zipfile.ZipFile(path) as zipped:
        for info in tqdm(_zip_members(zipped), desc=f"extract {path.name}", unit="file", disable=None):
            zipped.extract(info, dest)


def _merge_into(src: Path, dst: Path) -> None:
    """Move the tree ``src`` into ``dst`` (renames on one filesystem), merging folders that already exist."""
    dst.mkdir(parents=True, exist_ok=True)
    for child in sorted(src.iterdir()):
        target = dst / child.name
        if child.is_dir() and not child.is_symlink() and target.is_dir() and not target.is_symlink():
            _merge_into(child, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(child, target)


class ArchiveRejectedError(DownloadError):
    """The archive is unsafe, damaged or not the official file: it must not be used (or trusted later)."""


def extract(path: Path, archive: Archive, dest: Path) -> None:
    """Safely extract ``path`` into ``dest/<archive.into>``; all or nothing.

    Members land in a staging folder next to ``dest`` (same filesystem) and are moved into place only
    after the whole archive unpacked and the expected paths are there.

    Raises:
        ArchiveRejectedError: An unsafe member (path traversal, absolute path, link leaving the folder,
            special file), a damaged archive, or a missing expected path; nothing is moved into ``dest``.
        DownloadError: Writing failed (e.g. disk full); nothing is moved into ``dest`` either.
    """
    staging = dest.parent / f".extracting-{dest.name}-{archive.filename}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        _unpack(path, archive, staging)
        missing = [item for item in archive.expect if not (staging / item).exists()]
        if missing:
            raise ArchiveRejectedError(
                f"{path} does not contain {missing[0]}, which the official {archive.filename} has; "
                "nothing was extracted: replace it with the official archive"
            )
        _merge_into(staging, dest / archive.into if archive.into else dest)
    except _UnsafeMemberError as refused:
        raise ArchiveRejectedError(
            f"refusing {path}: member {refused.member!r} {refused.reason}; nothing was extracted. "
            "This is not the official archive: get it again from the official source"
        ) from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        detail = (str(err).splitlines() or [""])[0].rstrip(":")
        raise ArchiveRejectedError(
            f"{path} is damaged or not a {archive.kind} archive ({type(err).__name__}: {detail}); "
            "nothing was extracted: get it again"
        ) from None
    except OSError as err:
        raise DownloadError(
            f"extracting {path} failed ({err.strerror or err}); nothing was moved into {dest}: fix the cause "
            "(disk space? permissions?) and re-run"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
