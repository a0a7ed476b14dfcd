"""ADE20K val (2,000 images): ADE-150 (SceneParsing) and ADE-847 (ADE20K-full, uint16 labels).

ADE-150 is ``ADEChallengeData2016`` as downloaded (0 = "other" -> ignored by ``reduce_zero_label``).
ADE-847 is MaskFormer's preparation of ``ADE20K_2021_17_01``: images with short side <= 512 and uint16
``.tif`` trainIds 0..846 with 65535 ignored (docs/datasets.md §7-8).
"""

from __future__ import annotations

from typing import ClassVar

from mmseg.datasets import ADE20KDataset

from cliptrase.datasets.base import OVSSDataset, make_palette
from cliptrase.datasets.spec import MB, register_dataset
from cliptrase.datasets.vocab import read_paper_names


@register_dataset(
    sources=("ade20k150",),
    converter="cliptrase.datasets.prepare.ade:prepare_ade150",
    column=7,
    standard=True,
    paper=7,
)
class ADE150Dataset(OVSSDataset, ADE20KDataset):
    """mmseg's ``ADE20KDataset``: 150 classes (note ``"bed "``), 0 -> 255 ignored, 1..150 -> 0..149."""

    CONFIG_NAME = "ade150"
    DATA_SUBDIR = "ade/ADEChallengeData2016"
    IMG_DIR = "images/validation"
    ANN_DIR = "annotations/validation"
    REDUCE_ZERO_LABEL = True
    EXPECTED_VAL_IMAGES = 2000
    METAINFO = ADE20KDataset.METAINFO


_ADE847_NAMES = tuple(read_paper_names("ADEfull"))


@register_dataset(
    sources=("ade20k_full",),
    prepared_bytes=600 * MB,
    converter="cliptrase.datasets.prepare.ade847:prepare_ade847",
    converter_options=frozenset({"id_map"}),
    column=9,
    paper=8,
)
class ADE847Dataset(OVSSDataset):
    """ADE20K-full, 847 classes in MaskFormer trainId order; ids >= 255 are real classes, 65535 ignored.

    Class names are the authors' list (``class_names/paper/ADEfull.txt``); 217 of them contain commas
    ("building, edifice") and are one class each.
    """

    CONFIG_NAME = "ade847"
    DATA_SUBDIR = "ADE20K_2021_17_01"
    IMG_DIR = "images_detectron2/validation"
    ANN_DIR = "annotations_detectron2/validation"
    SEG_MAP_SUFFIX = ".tif"
    IGNORE_INDEX = 65535
    LABEL_DTYPE = "uint16"
    EXPECTED_VAL_IMAGES = 2000
    METAINFO: ClassVar[dict] = dict(classes=_ADE847_NAMES, palette=make_palette(len(_ADE847_NAMES)))
