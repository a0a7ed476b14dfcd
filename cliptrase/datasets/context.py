"""PASCAL Context val (VOC2010 images, 5,105-image Detail val split): PC60, PC59 and PC459.

PC60/PC59 read ``SegmentationClassContext`` (uint8: 0 background, 1..59 classes) as mmseg does; PC459 reads
the full-vocabulary uint16 TIFFs of the CAT-Seg/ProxyCLIP layout (0..458, 65535 ignore) with the same split
(docs/datasets.md §3).
"""

from __future__ import annotations

from typing import ClassVar

from mmseg.datasets import PascalContextDataset, PascalContextDataset59

from cliptrase.datasets.base import OVSSDataset, make_palette
from cliptrase.datasets.spec import MB, register_dataset
from cliptrase.datasets.vocab import read_paper_names

_SOURCES = ("voc2010", "pascal_context")  # VOC2010 images + trainval_merged.json
_PREPARE = "cliptrase.datasets.prepare.context:prepare_context"


class _ContextFacts(OVSSDataset):
    """Layout shared by the three PASCAL Context benchmarks."""

    DATA_SUBDIR = "VOCdevkit/VOC2010"
    IMG_DIR = "JPEGImages"
    ANN_DIR = "SegmentationClassContext"
    SPLIT = "ImageSets/SegmentationContext/val.txt"
    EXPECTED_VAL_IMAGES = 5105


@register_dataset(
    sources=_SOURCES, prepared_bytes=60 * MB, converter=_PREPARE, column=1, standard=True, paper=5
)
class Context60Dataset(_ContextFacts, PascalContextDataset):
    """mmseg's ``PascalContextDataset``: 60 classes, every pixel labelled, background = 0."""

    CONFIG_NAME = "context60"
    HAS_BACKGROUND = True
    METAINFO = PascalContextDataset.METAINFO


@register_dataset(
    sources=_SOURCES, prepared_bytes=60 * MB, converter=_PREPARE, column=4, standard=True, paper=4
)
class Context59Dataset(_ContextFacts, PascalContextDataset59):
    """mmseg's ``PascalContextDataset59``: background 0 -> 255 (ignored), 1..59 -> 0..58."""

    CONFIG_NAME = "context59"
    REDUCE_ZERO_LABEL = True
    METAINFO = PascalContextDataset59.METAINFO


_PC459_NAMES = tuple(read_paper_names("PC459"))


@register_dataset(
    sources=(*_SOURCES, "pascal_context_full"),
    prepared_bytes=300 * MB,
    converter="cliptrase.datasets.prepare.context459:prepare_context459",
    column=8,
    paper=6,
)
class Context459Dataset(_ContextFacts):
    """Full PASCAL Context vocabulary: ``LabelMap - 1`` as uint16 ``.tif``, 65535 ignored.

    Ids 255..458 are real classes, so the ignore index must not be 255 (docs/datasets.md §3c gotcha 2). Class
    names are the authors' list (``class_names/paper/PC459.txt``), the single source of these 459 names.
    """

    CONFIG_NAME = "context459"
    ANN_DIR = "annotations_detectron2/pc459_val"
    SEG_MAP_SUFFIX = ".tif"
    IGNORE_INDEX = 65535
    LABEL_DTYPE = "uint16"
    METAINFO: ClassVar[dict] = dict(classes=_PC459_NAMES, palette=make_palette(len(_PC459_NAMES)))
