"""Orchestration: make every archive a benchmark needs present, verified, extracted and marked, skipping
what an earlier run finished; login-only sources say where to put their archives."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cliptrase.datasets.download.archives import ArchiveRejectedError, extract
from cliptrase.datasets.download.catalogue import (
    DATASET_SOURCES,
    DOWNLOADS_DIR,
    RAW_DIR,
    Archive,
    Source,
    resolve_url,
    sources_for,
)
from cliptrase.datasets.download.disk import FreeBytes, check_disk_space, ensure_writable, human_bytes
from cliptrase.datasets.download.http import fetch
from cliptrase.datasets.download.manifest import Hashes, Manifest, now_iso, verify
from cliptrase.errors import DownloadError, ExitCode, UserError
from cliptrase.paths import default_data_root

logger = logging.getLogger(__name__)

MARKER_DIR = ".extracted"


class ManualDownloadError(UserError, FileNotFoundError):
    """A login-only source whose archives are not in ``<root>/downloads`` yet (the run is incomplete).

    ``instructions`` holds the lines that say where to get each archive and where to put it.
    """

    exit_code = ExitCode.INCOMPLETE

    def __init__(self, message: str, instructions: Sequence[str]) -> None:
        super().__init__(message)
        self.instructions = list(instructions)


ArchiveAction = Literal["downloaded", "resumed", "verified", "extracted-earlier", "placed"]


@dataclass
class ArchiveOutcome:
    """What happened to one archive: the action, bytes fetched over the network, and seconds spent."""

    filename: str
    action: ArchiveAction
    fetched_bytes: int = 0
    seconds: float = 0.0


@dataclass
class SourceOutcome:
    """The archives of one source, all verified and extracted."""

    key: str
    archives: list[ArchiveOutcome] = field(default_factory=list)

    @property
    def fetched_bytes(self) -> int:
        """Bytes fetched over the network for this source in this run."""
        return sum(a.fetched_bytes for a in self.archives)


def _marker(root: Path, source: Source, archive: Archive) -> Path:
    return Path(root) / RAW_DIR / source.raw_dir / MARKER_DIR / f"{archive.filename}.json"


def required_bytes(root: Path, sources: Iterable[Source]) -> int:
    """Bytes still needed to fetch and extract ``sources`` (estimates where sizes are unverified).

    Already extracted archives cost nothing; a present archive costs only its extraction; a partial
    download costs what is left of it. Login-only archives count only once the user has placed them.
    """
    total = 0
    for source in sources:
        for archive in source.archives:
            if _marker(root, source, archive).is_file():
                continue
            final = Path(root) / DOWNLOADS_DIR / archive.filename
            part = final.with_name(final.name + ".part")
            if source.needs_login and not final.is_file():
                continue
            if not final.is_file():
                size = archive.size or archive.approx_bytes
                total += max(0, size - (part.stat().st_size if part.is_file() else 0))
            total += archive.extracted_bytes
    return total


def manual_instructions(source: Source, root: Path) -> list[str]:
    """Where to get each archive of a login-only source, and where to put it."""
    downloads = Path(root) / DOWNLOADS_DIR
    lines = [
        f"{source.title} needs a sign-in at {source.login_page} (cliptrase never asks for or stores "
        "credentials). Download these files in your browser and put them, unextracted, at:"
    ]
    for archive in source.archives:
        placed = " [found]" if (downloads / archive.filename).is_file() else ""
        lines.append(
            f"  {downloads / archive.filename}  (~{human_bytes(archive.approx_bytes)}, from "
            f"{archive.page}){placed}"
        )
    names = [n for n, keys in DATASET_SOURCES.items() if source.key in keys]
    lines.append(
        f"then re-run `cliptrase data download {names[0]} --root {root}`; the files are verified "
        "and extracted like the public ones"
    )
    return lines


def _log_licence(source: Source) -> None:
    logger.info("%s: licence: %s", source.title, source.licence)
    logger.info("%s: cite: %s", source.title, source.citation)


def fetch_source(
    source: Source,
    root: Path,
    *,
    mirrors: Mapping[str, str] | None = None,
    free_bytes: FreeBytes | None = None,
    keep_archives: bool = True,
    manifest: Manifest | None = None,
) -> SourceOutcome:
    """Make every archive of ``source`` present, verified and extracted under ``root``.

    Raises:
        ManualDownloadError: A login-only archive is not in ``<root>/downloads`` yet.
        DownloadError: Network, verification or extraction failure (one line with the fix).
    """
    root = Path(root)
    manifest = manifest or Manifest(root)
    manifest.record_source(source)
    _log_licence(source)
    if source.needs_login:
        missing = [
            a
            for a in source.archives
            if not _marker(root, source, a).is_file() and not (root / DOWNLOADS_DIR / a.filename).is_file()
        ]
        if missing:
            raise ManualDownloadError(
                f"{source.title}: {', '.join(a.filename for a in missing)} not found in "
                f"{root / DOWNLOADS_DIR}; sign in at {source.login_page}, download, and put the files there",
                manual_instructions(source, root),
            )
    outcome = SourceOutcome(source.key)
    for archive in source.archives:
        outcome.archives.append(
            _ensure_archive(source, archive, root, mirrors, free_bytes, keep_archives, manifest)
        )
    return outcome


def _ensure_archive(
    source: Source,
    archive: Archive,
    root: Path,
    mirrors: Mapping[str, str] | None,
    free_bytes: FreeBytes | None,
    keep_archives: bool,
    manifest: Manifest,
) -> ArchiveOutcome:
    """Fetch (or find), verify, extract and mark one archive; skip what an earlier run finished."""
    t0 = time.monotonic()
    final = root / DOWNLOADS_DIR / archive.filename
    marker = _marker(root, source, archive)
    if marker.is_file():
        if not final.is_file():
            logger.info("%s: extracted earlier (archive since removed); skipped", archive.filename)
            return ArchiveOutcome(archive.filename, "extracted-earlier", 0, time.monotonic() - t0)
        _verify_present(final, source, archive, manifest)
        logger.info("%s: verified, extracted earlier; skipped", archive.filename)
        return ArchiveOutcome(archive.filename, "verified", 0, time.monotonic() - t0)
    fetched, action = 0, "placed" if source.needs_login else "verified"
    if final.is_file():
        _verify_present(final, source, archive, manifest)
    else:
        fetched, action = _download(source, archive, root, mirrors, free_bytes, manifest)
    try:
        extract(final, archive, root / RAW_DIR / source.raw_dir)
    except ArchiveRejectedError:
        manifest.forget_archive(archive.filename)
        if not source.needs_login:  # a damaged or hostile download must not be trusted by the next run
            final.unlink(missing_ok=True)
        raise
    marker.parent.mkdir(parents=True, exist_ok=True)
    sha256 = (manifest.archive(archive.filename) or {}).get("sha256")
    marker.write_text(json.dumps({"archive": archive.filename, "sha256": sha256, "extracted_at": now_iso()}))
    logger.info("%s: extracted into %s", archive.filename, root / RAW_DIR / source.raw_dir / archive.into)
    if not keep_archives:
        final.unlink()
        logger.info("%s: archive deleted after extraction (--delete-archives)", archive.filename)
    return ArchiveOutcome(archive.filename, action, fetched, time.monotonic() - t0)


def _verify_present(final: Path, source: Source, archive: Archive, manifest: Manifest) -> None:
    """Verify an archive already under its final name; on a mismatch it is never used.

    A downloaded file that fails is deleted (the next run fetches it again); a file the user placed is
    kept, and the message says where to get the official one.
    """
    problem = verify(archive, Hashes().update_from_file(final), manifest, None)
    if problem is None:
        return
    manifest.forget_archive(archive.filename)
    if source.needs_login:
        raise ArchiveRejectedError(
            f"{final}: {problem}; replace it with the official file from {archive.page}"
        )
    final.unlink()
    raise ArchiveRejectedError(f"{final}: {problem}; the file was deleted: re-run to download it again")


def _download(
    source: Source,
    archive: Archive,
    root: Path,
    mirrors: Mapping[str, str] | None,
    free_bytes: FreeBytes | None,
    manifest: Manifest,
) -> tuple[int, ArchiveAction]:
    """Fetch into ``.part``, verify, rename; a verification failure deletes the ``.part`` file."""
    url = resolve_url(source, archive, mirrors)
    final = root / DOWNLOADS_DIR / archive.filename
    part = final.with_name(final.name + ".part")
    logger.info(
        "%s: downloading from %s (~%s)",
        archive.filename,
        url,
        human_bytes(archive.size or archive.approx_bytes),
    )
    hashes, fetched, resumed = fetch(url, part, archive, root, free_bytes)
    problem = verify(archive, hashes, manifest, url)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{archive.filename} from {url}: {problem}; the download was deleted: re-run to fetch it again, "
            "or use another mirror if it keeps failing"
        )
    os.replace(part, final)
    logger.info(
        "%s: %s and verified (%s)",
        archive.filename,
        "resumed" if resumed else "downloaded",
        human_bytes(hashes.size),
    )
    return fetched, "resumed" if resumed else "downloaded"


def download_datasets(
    names: Sequence[str],
    root: Path | None = None,
    *,
    mirrors: Mapping[str, str] | None = None,
    free_bytes: FreeBytes | None = None,
    keep_archives: bool = True,
) -> tuple[list[SourceOutcome], list[ManualDownloadError]]:
    """Download, verify and extract everything ``names`` need under ``root``; skip what is done.

    The disk-space check covers the whole request before anything is fetched. A missing login-only
    source does not stop the others: it is returned with its instructions.

    Args:
        names: Dataset config names (``voc20``, ``context59``...).
        root: Data root (default ``$CLIPTRASE_DATA`` or ``./data``).
        mirrors: Source key or archive file name -> URL base (see :func:`resolve_url`).
        free_bytes: Free-space function (default :func:`default_free_bytes`), for tests.
        keep_archives: Keep the archives after extraction (they let later runs re-verify).

    Raises:
        KeyError: Unknown dataset name.
        PermissionError: The root is not writable.
        DiskSpaceError: Not enough free space.
        DownloadError: A network, verification or extraction failure.
    """
    root = Path(root) if root is not None else default_data_root()
    sources = sources_for(names)
    ensure_writable(root)
    needed = required_bytes(root, sources)
    check_disk_space(root, needed, free_bytes=free_bytes, what="archives and their extracted files")
    if needed:
        logger.info("about to use up to %s under %s for %s", human_bytes(needed), root, ", ".join(names))
    manifest = Manifest(root)
    done: list[SourceOutcome] = []
    manual: list[ManualDownloadError] = []
    for source in sources:
        try:
            done.append(
                fetch_source(
                    source,
                    root,
                    mirrors=mirrors,
                    free_bytes=free_bytes,
                    keep_archives=keep_archives,
                    manifest=manifest,
                )
            )
        except ManualDownloadError as err:
            manual.append(err)
    return done, manual
