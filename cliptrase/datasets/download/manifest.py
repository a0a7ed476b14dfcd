"""``<root>/downloads/manifest.json`` and archive verification: size and md5/sha256 against the published
references, or trust on first download (the sha256 recorded then must match every later copy)."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from cliptrase.datasets.download.catalogue import DOWNLOADS_DIR, Archive, Source
from cliptrase.utils import fs

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
CHUNK = 1 << 20
"""Bytes read or streamed at a time."""


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (manifest and marker timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """``<root>/downloads/manifest.json``: verified checksums per archive, licence and citation per source.

    Archives without a published checksum are trusted on first download: their sha256 is recorded here and
    every later copy must match it. Written atomically after every change.
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / DOWNLOADS_DIR / MANIFEST_NAME
        self.data: dict[str, dict] = {"archives": {}, "sources": {}}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(
                    f"{self.path} is not valid JSON ({err}); delete it (checksums are recomputed)"
                ) from None
            self.data["archives"].update(loaded.get("archives", {}))
            self.data["sources"].update(loaded.get("sources", {}))

    def archive(self, filename: str) -> dict | None:
        """The recorded entry of ``filename``, if any."""
        return self.data["archives"].get(filename)

    def record_archive(self, filename: str, entry: dict) -> None:
        """Record (replace) the verified entry of ``filename``."""
        self.data["archives"][filename] = entry
        self.save()

    def forget_archive(self, filename: str) -> None:
        """Drop the entry of ``filename`` (its file was refused or deleted)."""
        if self.data["archives"].pop(filename, None) is not None:
            self.save()

    def record_source(self, source: Source) -> None:
        """Record title, homepage, licence and citation of ``source``."""
        self.data["sources"][source.key] = {
            "title": source.title,
            "homepage": source.homepage,
            "licence": source.licence,
            "citation": source.citation,
        }
        self.save()

    def save(self) -> None:
        """Write the manifest through a temporary file and an atomic rename."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fs.atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")


class Hashes:
    """md5 and sha256 computed together, so a file is read (or streamed) once."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        self.sha256.update(chunk)
        self.size += len(chunk)

    def update_from_file(self, path: Path, *, desc: str | None = None) -> Hashes:
        total = path.stat().st_size
        with path.open("rb") as fh, progress_bar(total, 0, desc or f"verify {path.name}") as bar:
            while chunk := fh.read(CHUNK):
                self.update(chunk)
                bar.update(len(chunk))
        return self


def progress_bar(total: int | None, initial: int, desc: str) -> tqdm:
    """A byte progress bar (size, rate, ETA); hidden when stderr is not a terminal."""
    return tqdm(
        total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=None
    )


def verify(archive: Archive, hashes: Hashes, manifest: Manifest, url: str | None) -> str | None:
    """Check size and checksums of a complete file against the references, else against the manifest.

    Returns None when the file passes (and records it in the manifest), else a one-line description of
    the mismatch. With no published checksum and no recorded copy, the file's sha256 is recorded: later
    copies must match it. ``url`` None keeps the recorded URL (a file found in place).
    """
    if archive.size is not None and hashes.size != archive.size:
        return f"size {hashes.size} bytes differs from the published {archive.size} ({archive.reference})"
    published = [(algo, want) for algo, want in (("md5", archive.md5), ("sha256", archive.sha256)) if want]
    for algo, want in published:
        got = getattr(hashes, algo).hexdigest()
        if got != want.lower():
            return f"{algo} {got} differs from the published {want} ({archive.reference})"
    sha256 = hashes.sha256.hexdigest()
    recorded = manifest.archive(archive.filename) or {}
    same_copy = recorded.get("sha256") == sha256
    if not published and recorded.get("sha256") and not same_copy:
        return (
            f"sha256 {sha256} differs from the copy recorded on {recorded.get('verified_at')} "
            f"({recorded['sha256']}); if the official file changed, delete its entry from {manifest.path}"
        )
    if not published and not same_copy:
        logger.info(
            "%s: no published checksum; recorded its sha256 %s in %s", archive.filename, sha256, manifest.path
        )
    manifest.record_archive(
        archive.filename,
        {
            "url": url or recorded.get("url"),
            "size": hashes.size,
            "md5": hashes.md5.hexdigest(),
            "sha256": sha256,
            "checked_against": "published " + "/".join(a for a, _ in published)
            if published
            else "sha256 recorded on first download",
            "reference": archive.reference or None,
            "verified_at": recorded.get("verified_at") if same_copy else now_iso(),
        },
    )
    return None
