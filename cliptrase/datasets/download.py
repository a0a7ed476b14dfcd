"""Fetch, verify and safely extract the official benchmark archives into ``<root>/raw`` for the converters.

``cliptrase data download NAME --root DIR`` runs :func:`download_datasets`. Each benchmark needs one or more
*sources* (an archive group with one licence: VOC2012, VOC2010, the PASCAL-Context annotations, COCO val2017 +
stuffthingmaps, ADE20K-150, and the login-only Cityscapes and ADE20K-full). Per archive:

1. ``<root>/downloads/<file>.part`` is streamed with a progress bar and resumed with an HTTP ``Range``
   request after an interruption (206 checked; a server that ignores ranges gets a full re-download).
2. Size and checksum are verified: md5/sha256 where datasets.md quotes a reference, otherwise the sha256 of
   the first download is recorded in ``<root>/downloads/manifest.json`` and later copies must match it.
   Only then is ``.part`` renamed to its final name, so a file under its final name is always verified.
3. The archive is checked member by member (no absolute paths, no ``..``, no links leaving the root, no
   device files) and refused whole, with one line, when any member fails; it is extracted into a temporary
   folder that is moved into ``<root>/raw/<group>`` only when complete, so a refused or damaged archive
   leaves nothing behind. A marker under ``<root>/raw/<group>/.extracted`` records the extraction.

A second run verifies what is there and fetches nothing. Login-only sources are never fetched: the command
says where to get the archives and where to put them, then verifies and extracts them like the others; no
credential is ever asked for or stored. Licence and citation of every source are logged and recorded in the
manifest. ``$CLIPTRASE_DOWNLOAD_BASE`` (or a per-source mirror) replaces the part of each URL before the
file name, which is how the tests point the downloader at a loopback server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from cliptrase import __version__
from cliptrase.datasets.base import default_data_root
from cliptrase.utils import fs

logger = logging.getLogger(__name__)

DOWNLOAD_BASE_ENV = "CLIPTRASE_DOWNLOAD_BASE"
"""Replaces the URL prefix before the file name of every public archive (a mirror, or a test server)."""
FREE_BYTES_ENV = "CLIPTRASE_FREE_BYTES"
"""Pretend this many bytes are free at the root (tests of the disk-space check without filling a disk)."""
DOWNLOADS_DIR = "downloads"
RAW_DIR = "raw"
MANIFEST_NAME = "manifest.json"
MARKER_DIR = ".extracted"

GB = 10**9
MB = 10**6
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
_LOG_EVERY_S = 30.0
_HTTP_RANGE_NOT_SATISFIABLE = 416
_HTTP_PARTIAL = 206
_HTTP_SERVER_ERROR = 500
_LINK_TYPE = 0o120000  # S_IFLNK in a zip entry's external attributes
_DRIVE = re.compile(r"^[A-Za-z]:")

FreeBytes = Callable[[Path], int]

# --------------------------------------------------------------------------------------------- source table


@dataclass(frozen=True)
class Archive:
    """One file of an official download.

    ``size``/``md5``/``sha256`` are set only where a reference states them (``reference`` says which);
    ``approx_bytes`` and ``extracted_bytes`` are planning estimates for the disk-space check. ``into`` is
    the folder under the source's raw directory that receives the archive's top level, and ``expect`` lists
    paths (relative to the archive's top level) that the official archive contains, so a wrong file is
    caught before anything is moved into place. ``page`` is where a login-only archive is obtained.
    """

    filename: str
    url: str | None
    approx_bytes: int
    extracted_bytes: int
    into: str = ""
    expect: tuple[str, ...] = ()
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    reference: str = ""
    page: str | None = None

    @property
    def kind(self) -> Literal["tar", "zip", "file"]:
        """How the file is unpacked, from its name: tar (any compression), zip, or a plain file."""
        name = self.filename.lower()
        if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
            return "tar"
        return "zip" if name.endswith(".zip") else "file"


@dataclass(frozen=True)
class Source:
    """A group of archives under one licence, extracted into ``<root>/raw/<raw_dir>``.

    ``login_page`` is set for sources that require a sign-in; their archives are placed by the user.
    """

    key: str
    title: str
    homepage: str
    raw_dir: str
    archives: tuple[Archive, ...]
    licence: str
    citation: str
    login_page: str | None = None

    @property
    def needs_login(self) -> bool:
        """True when the archives cannot be fetched anonymously."""
        return self.login_page is not None


_VOC_CITATION = (
    "Everingham, Van Gool, Williams, Winn, Zisserman. The PASCAL Visual Object Classes (VOC) Challenge. "
    "IJCV 88(2), 2010."
)
_VOC_LICENCE = (
    "images from Flickr: 'use of these images must respect the corresponding terms of use' (Flickr Terms of "
    "Use); no separate annotation licence is stated (VOC page, Database Rights)"
)

SOURCES: dict[str, Source] = {
    s.key: s
    for s in (
        Source(
            key="voc2012",
            title="PASCAL VOC 2012 trainval",
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
            raw_dir="pascal",
            archives=(
                Archive(
                    "VOCtrainval_11-May-2012.tar",
                    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                    approx_bytes=1_999_639_040,
                    extracted_bytes=2_000 * MB,
                    expect=("VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt",),
                    size=1_999_639_040,
                    md5="6cd6e144f989b92b3379bac3b3de84fd",
                    reference="size: TFDS url_checksums/voc.txt; md5: torchvision datasets/voc.py",
                ),
            ),
            licence=_VOC_LICENCE,
            citation=_VOC_CITATION,
        ),
        Source(
            key="voc2010",
            title="PASCAL VOC 2010 trainval (PASCAL-Context images)",
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2010/",
            raw_dir="pascal",
            archives=(
                Archive(
                    "VOCtrainval_03-May-2010.tar",
                    "http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar",
                    approx_bytes=1_400 * MB,  # "1.3GB" on the VOC2010 page; exact size unverified
                    extracted_bytes=1_400 * MB,
                    expect=("VOCdevkit/VOC2010/JPEGImages",),
                    md5="da459979d0c395079b5c75ee67908abb",
                    reference="md5: torchvision datasets/voc.py",
                ),
            ),
            licence=_VOC_LICENCE,
            citation=_VOC_CITATION,
        ),
        Source(
            key="pascal_context",
            title="PASCAL-Context 59/60 annotations (PASCAL in Detail trainval_merged.json)",
            homepage="https://cs.stanford.edu/~roozbeh/pascal-context/",
            raw_dir="pascal",
            archives=(
                Archive(
                    "trainval_merged.json",
                    "https://codalabuser.blob.core.windows.net/public/trainval_merged.json",
                    approx_bytes=1_000 * MB,  # size unverified (datasets.md §10): a generous estimate
                    extracted_bytes=0,  # hard-linked into the raw folder
                ),
            ),
            licence="no dataset-specific licence found; the images are VOC2010 (Flickr Terms of Use)",
            citation=(
                "Mottaghi et al. The Role of Context for Object Detection and Semantic Segmentation in the "
                "Wild. CVPR 2014."
            ),
        ),
        Source(
            key="pascal_context_full",
            title="PASCAL-Context full (459-class) annotations",
            homepage="https://cs.stanford.edu/~roozbeh/pascal-context/",
            raw_dir="pascal",
            archives=(
                Archive(
                    "trainval.tar.gz",
                    "https://cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz",
                    approx_bytes=31 * MB,  # "30.7 MB" per the PASCAL-Context page
                    extracted_bytes=600 * MB,  # estimate
                    expect=("trainval",),
                ),
            ),
            licence="no licence found; the images are VOC2010 (Flickr Terms of Use)",
            citation=(
                "Mottaghi et al. The Role of Context for Object Detection and Semantic Segmentation in the "
                "Wild. CVPR 2014."
            ),
        ),
        Source(
            key="coco_stuff164k",
            title="COCO val2017 images + COCO-Stuff stuffthingmaps (COCO-Stuff-164k, COCO-Object)",
            homepage="https://github.com/nightrome/cocostuff",
            raw_dir="coco",
            archives=(
                Archive(
                    "val2017.zip",
                    "http://images.cocodataset.org/zips/val2017.zip",
                    approx_bytes=815_585_330,
                    extracted_bytes=820 * MB,
                    into="images",
                    expect=("val2017",),
                    size=815_585_330,
                    reference="size: TFDS url_checksums/coco.txt",
                ),
                Archive(
                    "stuffthingmaps_trainval2017.zip",
                    "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
                    "stuffthingmaps_trainval2017.zip",
                    approx_bytes=660 * MB,  # "659 MB" in the COCO-Stuff README
                    extracted_bytes=700 * MB,
                    into="annotations",
                    expect=("val2017",),
                ),
            ),
            licence=(
                "COCO images: Flickr Terms of Use; COCO annotations: CC BY 4.0; COCO-Stuff annotations: "
                "CC BY 4.0 (COCO-Stuff README, Licensing)"
            ),
            citation=(
                "Lin et al. Microsoft COCO: Common Objects in Context. ECCV 2014. / Caesar, Uijlings, "
                "Ferrari. COCO-Stuff: Thing and Stuff Classes in Context. CVPR 2018."
            ),
        ),
        Source(
            key="ade20k150",
            title="ADE20K SceneParsing (ADEChallengeData2016, 150 classes)",
            homepage="http://sceneparsing.csail.mit.edu/",
            raw_dir="ade",
            archives=(
                Archive(
                    "ADEChallengeData2016.zip",
                    "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
                    approx_bytes=967_382_037,
                    extracted_bytes=1_000 * MB,
                    expect=("ADEChallengeData2016/images/validation",),
                    size=967_382_037,
                    reference="size: TFDS url_checksums/ade20k.txt",
                ),
            ),
            licence=(
                "bsd-3-clause per the scene_parse_150 dataset card; the full ADE20K is under the ADE20K "
                "Terms of Use"
            ),
            citation=(
                "Zhou et al. Scene Parsing through ADE20K Dataset. CVPR 2017. / Zhou et al. Semantic "
                "Understanding of Scenes through the ADE20K Dataset. IJCV 2019."
            ),
        ),
        Source(
            key="cityscapes",
            title="Cityscapes fine annotations + left 8-bit images",
            homepage="https://www.cityscapes-dataset.com/",
            raw_dir="cityscapes",
            archives=(
                Archive(
                    "gtFine_trainvaltest.zip",
                    None,
                    approx_bytes=241 * MB,
                    extracted_bytes=600 * MB,
                    expect=("gtFine/val",),
                    page="https://www.cityscapes-dataset.com/file-handling/?packageID=1",
                ),
                Archive(
                    "leftImg8bit_trainvaltest.zip",
                    None,
                    approx_bytes=11 * GB,
                    extracted_bytes=11 * GB,
                    expect=("leftImg8bit/val",),
                    page="https://www.cityscapes-dataset.com/file-handling/?packageID=3",
                ),
            ),
            licence="Cityscapes custom terms (scientific use): https://www.cityscapes-dataset.com/license/",
            citation=(
                "Cordts et al. The Cityscapes Dataset for Semantic Urban Scene Understanding. CVPR 2016."
            ),
            login_page="https://www.cityscapes-dataset.com/login/",
        ),
        Source(
            key="ade20k_full",
            title="ADE20K full release 2021_17_01 (847 classes)",
            homepage="https://groups.csail.mit.edu/vision/datasets/ADE20K/",
            raw_dir="ade_full",
            archives=(
                Archive(
                    "ADE20K_2021_17_01.zip",
                    None,
                    approx_bytes=4 * GB,  # size unverified (datasets.md §10): an estimate
                    extracted_bytes=5 * GB,
                    expect=("ADE20K_2021_17_01",),
                    page="https://groups.csail.mit.edu/vision/datasets/ADE20K/",
                ),
            ),
            licence="ADE20K Terms of Use (https://groups.csail.mit.edu/vision/datasets/ADE20K/terms/)",
            citation=("Zhou et al. Semantic Understanding of Scenes through the ADE20K Dataset. IJCV 2019."),
            login_page="https://groups.csail.mit.edu/vision/datasets/ADE20K/",
        ),
    )
}
"""Every official source the benchmarks need, keyed by source name (URLs, sizes, md5s: datasets.md)."""

DATASET_SOURCES: dict[str, tuple[str, ...]] = {
    "voc20": ("voc2012",),
    "voc21": ("voc2012",),
    "context59": ("voc2010", "pascal_context"),
    "context60": ("voc2010", "pascal_context"),
    "context459": ("voc2010", "pascal_context", "pascal_context_full"),
    "coco_object": ("coco_stuff164k",),
    "coco_stuff171": ("coco_stuff164k",),
    "ade150": ("ade20k150",),
    "ade847": ("ade20k_full",),
    "cityscapes": ("cityscapes",),
}
"""Dataset config name -> the sources its converter reads (all sharing one raw folder)."""

PREPARED_BYTES: dict[str, int] = {
    "voc20": 0,  # images and labels are hard-linked from the raw folder
    "voc21": 0,
    "context59": 60 * MB,
    "context60": 60 * MB,
    "context459": 300 * MB,
    "coco_object": 120 * MB,
    "coco_stuff171": 120 * MB,
    "ade150": 0,
    "ade847": 600 * MB,
    "cityscapes": 30 * MB,
}
"""Estimated bytes the converter writes into the data root (converted labels; images are hard-linked)."""


def downloadable_datasets() -> list[str]:
    """Dataset config names that :func:`download_datasets` knows (sorted)."""
    return sorted(DATASET_SOURCES)


def sources_for(names: Iterable[str], sources: Mapping[str, Source] | None = None) -> list[Source]:
    """The distinct sources of ``names``, in first-needed order.

    Raises:
        KeyError: An unknown dataset name; the message lists the valid ones.
    """
    table = SOURCES if sources is None else sources
    ordered: dict[str, Source] = {}
    for name in names:
        if name not in DATASET_SOURCES:
            hint = " (the demo is generated locally: nothing to download)" if name == "demo" else ""
            raise KeyError(f"unknown dataset {name!r}{hint}; valid: {', '.join(downloadable_datasets())}")
        for key in DATASET_SOURCES[name]:
            ordered.setdefault(key, table[key])
    return list(ordered.values())


def raw_dir(name: str, root: Path) -> Path:
    """Folder holding the extracted official download of dataset ``name``: the converters' ``--raw``."""
    return Path(root) / RAW_DIR / SOURCES[DATASET_SOURCES[name][0]].raw_dir


# ----------------------------------------------------------------------------------------- errors, outcomes


class DownloadError(RuntimeError):
    """A download, verification or extraction failed; the message is one line that names the fix."""


class DiskSpaceError(DownloadError):
    """Not enough free space at the root for what is about to be fetched."""


class ManualDownloadError(FileNotFoundError):
    """A login-only source whose archives are not in ``<root>/downloads`` yet.

    ``instructions`` holds the lines that say where to get each archive and where to put it.
    """

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


# ------------------------------------------------------------------------------------------------- helpers


def human_bytes(num: float) -> str:
    """``1.23 GB`` style (decimal units, as download pages quote sizes)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(num) < 1000 or unit == "GB":
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.2f} {unit}"
        num /= 1000
    return f"{num:.2f} GB"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resolve_url(source: Source, archive: Archive, mirrors: Mapping[str, str] | None = None) -> str:
    """The URL to fetch ``archive`` from.

    In order of precedence: a mirror for the file, a mirror for its source, ``$CLIPTRASE_DOWNLOAD_BASE``,
    the official URL. A mirror value replaces everything before the file name (``https://mirror/pascal``
    fetches ``https://mirror/pascal/VOCtrainval_11-May-2012.tar``); a value that already ends with the
    file name is used as it is.
    """
    mirrors = mirrors or {}
    base = mirrors.get(archive.filename) or mirrors.get(source.key) or os.environ.get(DOWNLOAD_BASE_ENV)
    if not base:
        if archive.url is None:
            raise ValueError(f"{archive.filename} has no public URL: it needs a sign-in")
        return archive.url
    if base.rstrip("/").endswith("/" + archive.filename):
        return base
    return f"{base.rstrip('/')}/{archive.filename}"


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


# ----------------------------------------------------------------------------------------------- manifest


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
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


# ------------------------------------------------------------------------------------------------ hashing


class _Hashes:
    """md5 and sha256 computed together, so a file is read (or streamed) once."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        self.sha256.update(chunk)
        self.size += len(chunk)

    def update_from_file(self, path: Path, *, desc: str | None = None) -> _Hashes:
        total = path.stat().st_size
        with path.open("rb") as fh, _bar(total, 0, desc or f"verify {path.name}") as bar:
            while chunk := fh.read(_CHUNK):
                self.update(chunk)
                bar.update(len(chunk))
        return self


def _bar(total: int | None, initial: int, desc: str) -> tqdm:
    """A byte progress bar (size, rate, ETA); hidden when stderr is not a terminal."""
    return tqdm(
        total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=None
    )


def _verify(archive: Archive, hashes: _Hashes, manifest: Manifest, url: str | None) -> str | None:
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
            "verified_at": recorded.get("verified_at") if same_copy else _now(),
        },
    )
    return None


# ---------------------------------------------------------------------------------------------- fetching


def _open(url: str, start: int) -> HTTPResponse:
    """GET ``url``, from byte ``start`` on when resuming. Separate so tests can assert the host."""
    headers = {"User-Agent": f"cliptrase/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)


class _RangeMismatchError(Exception):
    """The partial file does not fit the server's file (416 for another length): start over."""


def _request(url: str, start: int, filename: str) -> HTTPResponse | None:
    """Open the response, or None when the server says the resumed range is empty (the file is complete).

    Raises:
        _RangeMismatchError: The server refused the range and its file has another length than the part.
        DownloadError: HTTP errors and unreachable hosts, as one line with the fix.
    """
    try:
        return _open(url, start)
    except urllib.error.HTTPError as err:
        if err.code == _HTTP_RANGE_NOT_SATISFIABLE and start:
            total = (err.headers.get("Content-Range") or "").rpartition("/")[2]
            err.close()
            if total.isdigit() and int(total) == start:
                return None
            raise _RangeMismatchError(filename) from None
        hint = (
            "the server is failing: try again later or use a mirror"
            if err.code >= _HTTP_SERVER_ERROR
            else f"the file is not at this URL: check it (or ${DOWNLOAD_BASE_ENV} / --mirror)"
        )
        raise DownloadError(f"{filename}: HTTP {err.code} {err.reason} from {url}; {hint}") from None
    except (urllib.error.URLError, OSError, HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(
            f"{filename}: cannot reach {url} ({reason}); check the network, or use a mirror "
            f"(${DOWNLOAD_BASE_ENV} or --mirror)"
        ) from None


def _fetch(
    url: str, part: Path, archive: Archive, root: Path, free_bytes: FreeBytes | None
) -> tuple[_Hashes, int, bool]:
    """Stream ``url`` into ``part``, resuming from its current length. Returns hashes, bytes fetched, resumed.

    Raises:
        DownloadError: HTTP/network errors, a size other than the published one, an interrupted transfer
            (the ``.part`` file is kept and the next run resumes it).
        DiskSpaceError: The bytes still to come do not fit.
    """
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _request(url, start, archive.filename)
    except _RangeMismatchError:
        logger.warning("%s: the partial download does not match the server's file; starting over", part)
        part.unlink()
        start, response = 0, _request(url, 0, archive.filename)
    hashes = _Hashes()
    if response is None:  # 416 at exactly our length: the .part is already the whole file
        return hashes.update_from_file(part), 0, True
    with response:
        if start and response.status != _HTTP_PARTIAL:
            logger.warning("%s: the server ignored the range request; downloading from the start", url)
            start = 0
        total = _total_size(response, start, archive, url)
        if archive.size is not None and total is not None and total != archive.size:
            raise DownloadError(
                f"{archive.filename}: {url} serves {total} bytes, the official file has {archive.size}; "
                "this is not the official archive: use the official URL or a faithful mirror"
            )
        if total is not None:
            check_disk_space(root, total - start, free_bytes=free_bytes, what=f"rest of {archive.filename}")
        if start:
            hashes.update_from_file(part, desc=f"rehash {part.name}")
            logger.info(
                "%s: resuming at %s of %s",
                archive.filename,
                human_bytes(start),
                human_bytes(total) if total else "?",
            )
        fetched = _stream(response, part, hashes, start=start, total=total, filename=archive.filename)
    if total is not None and hashes.size < total:
        raise DownloadError(
            f"{archive.filename}: transfer interrupted at {human_bytes(hashes.size)} of "
            f"{human_bytes(total)}; the partial file {part} is kept: re-run the same command to resume"
        )
    return hashes, fetched, bool(start)


def _total_size(response: HTTPResponse, start: int, archive: Archive, url: str) -> int | None:
    """Length of the whole file: the server's ``Content-Range`` total (206) or ``Content-Length``.

    Falls back to the published size when the server states neither.

    Raises:
        DownloadError: A 206 whose range does not start where the partial file ends.
    """
    if start:
        content_range = response.headers.get("Content-Range") or ""
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
        if not match or int(match.group(1)) != start:
            raise DownloadError(
                f"{archive.filename}: {url} answered the range request for byte {start} with "
                f"{content_range!r}; delete the partial file and re-run"
            )
        if match.group(2).isdigit():
            return int(match.group(2))
    length = response.headers.get("Content-Length")
    return start + int(length) if length is not None and length.isdigit() else archive.size


def _stream(
    response: HTTPResponse, part: Path, hashes: _Hashes, *, start: int, total: int | None, filename: str
) -> int:
    """Append the response body to ``part`` (truncating it when ``start`` is 0); return bytes written."""
    written, t0, last_log = 0, time.monotonic(), time.monotonic()
    try:
        with part.open("ab" if start else "wb") as fh, _bar(total, start, filename) as bar:
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                hashes.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
                if time.monotonic() - last_log >= _LOG_EVERY_S:
                    last_log = time.monotonic()
                    _log_progress(filename, start + written, total, written / (last_log - t0))
    except (OSError, HTTPException) as err:
        reason = getattr(err, "strerror", None) or err
        raise DownloadError(
            f"{filename}: transfer failed after {human_bytes(start + written)} ({reason}); the partial file "
            f"{part} is kept: fix the cause and re-run the same command to resume"
        ) from None
    return written


def _log_progress(filename: str, done: int, total: int | None, rate: float) -> None:
    """A log line for runs without a terminal (no visible progress bar): size, rate and time left."""
    if total and rate > 0:
        left = (total - done) / rate
        logger.info(
            "%s: %s of %s (%s/s, about %d min left)",
            filename,
            human_bytes(done),
            human_bytes(total),
            human_bytes(rate),
            round(left / 60),
        )
    else:
        logger.info("%s: %s (%s/s)", filename, human_bytes(done), human_bytes(rate))


# -------------------------------------------------------------------------------------------- extraction


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
        _link_or_copy(path, dest / archive.filename)
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


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


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


# ------------------------------------------------------------------------------------------ orchestration


def _marker(root: Path, source: Source, archive: Archive) -> Path:
    return Path(root) / RAW_DIR / source.raw_dir / MARKER_DIR / f"{archive.filename}.json"


def is_extracted(root: Path, source: Source) -> bool:
    """True when every archive of ``source`` has been extracted under ``root``."""
    return all(_marker(root, source, a).is_file() for a in source.archives)


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
    marker.write_text(json.dumps({"archive": archive.filename, "sha256": sha256, "extracted_at": _now()}))
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
    problem = _verify(archive, _Hashes().update_from_file(final), manifest, None)
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
    hashes, fetched, resumed = _fetch(url, part, archive, root, free_bytes)
    problem = _verify(archive, hashes, manifest, url)
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
