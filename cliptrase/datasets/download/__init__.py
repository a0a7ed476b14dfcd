"""Fetch, verify and safely extract the official benchmark archives into ``<root>/raw`` for the converters.

``cliptrase data download NAME --root DIR`` runs :func:`download_datasets`. Each benchmark needs one or more
*sources* (an archive group with one licence: VOC2012, VOC2010, the PASCAL-Context annotations, COCO val2017 +
stuffthingmaps, ADE20K-150, and the login-only Cityscapes and ADE20K-full). Per archive:

1. ``<root>/downloads/<file>.part`` is streamed with a progress bar and resumed with an HTTP ``Range``
   request after an interruption (206 checked; a server that ignores ranges gets a full re-download).
2. Size and checksum are verified: md5/sha256 where docs/datasets.md quotes a reference, otherwise the
   sha256 of the first download is recorded in ``<root>/downloads/manifest.json`` and later copies must
   match it. Only then is ``.part`` renamed to its final name, so a file under its final name is always
   verified.
3. The archive is checked member by member (no absolute paths, no ``..``, no links leaving the root, no
   device files) and refused whole, with one line, when any member fails; it is extracted into a temporary
   folder that is moved into ``<root>/raw/<group>`` only when complete, so a refused or damaged archive
   leaves nothing behind. A marker under ``<root>/raw/<group>/.extracted`` records the extraction.

A second run verifies what is there and fetches nothing. Login-only sources are never fetched: the command
says where to get the archives and where to put them, then verifies and extracts them like the others; no
credential is ever asked for or stored. Licence and citation of every source are logged and recorded in the
manifest. ``$CLIPTRASE_DOWNLOAD_BASE`` (or a per-source mirror) replaces the part of each URL before the
file name, which is how the tests point the downloader at a loopback server.

Modules: :mod:`.catalogue` (sources, archives, which benchmark needs what), :mod:`.disk` (space and
writability), :mod:`.manifest` (checksums and verification), :mod:`.http` (resumable transfer),
:mod:`.archives` (safe extraction), :mod:`.orchestration` (:func:`download_datasets`, :func:`fetch_source`).
"""

from __future__ import annotations

from cliptrase.datasets.download.archives import ArchiveRejectedError, extract
from cliptrase.datasets.download.catalogue import (
    DATASET_SOURCES,
    DOWNLOADS_DIR,
    GB,
    PREPARED_BYTES,
    RAW_DIR,
    SOURCES,
    Archive,
    Source,
    downloadable_datasets,
    raw_dir,
    resolve_url,
    source_table,
    sources_for,
)
from cliptrase.datasets.download.disk import (
    DiskSpaceError,
    FreeBytes,
    check_disk_space,
    default_free_bytes,
    ensure_writable,
    human_bytes,
)
from cliptrase.datasets.download.manifest import MANIFEST_NAME, Manifest
from cliptrase.datasets.download.orchestration import (
    MARKER_DIR,
    ArchiveOutcome,
    ManualDownloadError,
    SourceOutcome,
    download_datasets,
    fetch_source,
    manual_instructions,
    required_bytes,
)
from cliptrase.datasets.spec import MB
from cliptrase.errors import DownloadError
from cliptrase.paths import DOWNLOAD_BASE_ENV, FREE_BYTES_ENV

__all__ = [
    "DATASET_SOURCES",
    "DOWNLOADS_DIR",
    "DOWNLOAD_BASE_ENV",
    "FREE_BYTES_ENV",
    "GB",
    "MANIFEST_NAME",
    "MARKER_DIR",
    "MB",
    "PREPARED_BYTES",
    "RAW_DIR",
    "SOURCES",
    "Archive",
    "ArchiveOutcome",
    "ArchiveRejectedError",
    "DiskSpaceError",
    "DownloadError",
    "FreeBytes",
    "Manifest",
    "ManualDownloadError",
    "Source",
    "SourceOutcome",
    "check_disk_space",
    "default_free_bytes",
    "download_datasets",
    "downloadable_datasets",
    "ensure_writable",
    "extract",
    "fetch_source",
    "human_bytes",
    "manual_instructions",
    "raw_dir",
    "required_bytes",
    "resolve_url",
    "source_table",
    "sources_for",
]
