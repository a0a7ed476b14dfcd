"""The catalogue of official downloads: every source and its archives (URLs, sizes, checksums, licence), and
the views of the dataset specs that say which sources each benchmark needs and what its converter writes
(docs/datasets.md; the specs: :mod:`cliptrase.datasets.spec`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cliptrase.datasets.spec import MB, SpecView, dataset_specs
from cliptrase.paths import DOWNLOAD_BASE_ENV

DOWNLOADS_DIR = "downloads"
RAW_DIR = "raw"

GB = 10**9


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
                    approx_bytes=1_000 * MB,  # size unverified (docs/datasets.md §10): a generous estimate
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
                    approx_bytes=4 * GB,  # size unverified (docs/datasets.md §10): an estimate
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
"""Every official source the benchmarks need, keyed by source name (URLs, sizes, md5s: docs/datasets.md)."""

DATASET_SOURCES: Mapping[str, tuple[str, ...]] = SpecView(lambda s: s.source_keys, lambda s: s.downloadable)
"""Dataset config name -> the keys of the sources its converter reads (all sharing one raw folder): a view
of each dataset's spec (``register_dataset(sources=...)`` in its module)."""

PREPARED_BYTES: Mapping[str, int] = SpecView(lambda s: s.prepared_bytes, lambda s: s.downloadable)
"""Estimated bytes the converter writes into the data root (converted labels; images are hard-linked): a
view of each dataset's spec."""


def source_table() -> dict[str, Source]:
    """Every known source by key: :data:`SOURCES` plus the ``Source`` objects a dataset spec declares."""
    table = dict(SOURCES)
    for spec in dataset_specs().values():
        for source in spec.own_sources:
            table.setdefault(source.key, source)
    return table


def downloadable_datasets() -> list[str]:
    """Dataset config names that :func:`download_datasets` knows (sorted)."""
    return sorted(DATASET_SOURCES)


def sources_for(names: Iterable[str], sources: Mapping[str, Source] | None = None) -> list[Source]:
    """The distinct sources of ``names``, in first-needed order.

    Raises:
        KeyError: An unknown dataset name; the message lists the valid ones.
    """
    table = source_table() if sources is None else sources
    ordered: dict[str, Source] = {}
    for name in names:
        if name not in DATASET_SOURCES:
            local = name in dataset_specs() and not dataset_specs()[name].needs_raw
            hint = f" (the {name} is generated locally: nothing to download)" if local else ""
            raise KeyError(f"unknown dataset {name!r}{hint}; valid: {', '.join(downloadable_datasets())}")
        for key in DATASET_SOURCES[name]:
            ordered.setdefault(key, table[key])
    return list(ordered.values())


def raw_dir(name: str, root: Path) -> Path:
    """Folder holding the extracted official download of dataset ``name``: the converters' ``--raw``."""
    return Path(root) / RAW_DIR / source_table()[DATASET_SOURCES[name][0]].raw_dir


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
