"""PASCAL VOC 2012 val: VOC21 (background = class 0) and VOC20 (background ignored).

Both read the raw palette PNGs of ``VOCtrainval_11-May-2012.tar`` (0 background, 1..20 classes, 255 void
boundary) with the 1,449-image ``ImageSets/Segmentation/val.txt`` split (docs/datasets.md §2).
"""

from __future__ import annotations

from typing import ClassVar

from mmseg.datasets import PascalVOCDataset

from cliptrase.datasets.base import OVSSDataset
from cliptrase.datasets.spec import register_dataset


class _VOCFacts(OVSSDataset):
    """Layout shared by VOC21 and VOC20."""

    DATA_SUBDIR = "VOCdevkit/VOC2012"
    IMG_DIR = "JPEGImages"
    ANN_DIR = "SegmentationClass"
    SPLIT = "ImageSets/Segmentation/val.txt"
    EXPECTED_VAL_IMAGES = 1449


@register_dataset(
    sources=("voc2012",),
    converter="cliptrase.datasets.prepare.voc:prepare_voc",
    column=0,
    standard=True,
    paper=1,
)
class VOC21Dataset(_VOCFacts, PascalVOCDataset):
    """mmseg's ``PascalVOCDataset`` unchanged: 21 classes, background 0, void 255 ignored."""

    CONFIG_NAME = "voc21"
    HAS_BACKGROUND = True
    METAINFO = PascalVOCDataset.METAINFO


@register_dataset(
    sources=("voc2012",),
    converter="cliptrase.datasets.prepare.voc:prepare_voc",
    column=3,
    standard=True,
    paper=0,
)
class VOC20Dataset(_VOCFacts):
    """The same files with ``reduce_zero_label``: background and void become 255, classes 1..20 -> 0..19.

    mmseg has no VOC20; this mirrors SCLIP's ``PascalVOC20Dataset`` (classes = VOC21[1:], same order).
    """

    CONFIG_NAME = "voc20"
    REDUCE_ZERO_LABEL = True
    METAINFO: ClassVar[dict] = dict(
        classes=PascalVOCDataset.METAINFO["classes"][1:], palette=PascalVOCDataset.METAINFO["palette"][1:]
    )
