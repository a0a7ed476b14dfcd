"""Cityscapes val (500 images, 19 classes): ``gtFine_labelTrainIds`` maps, 255 ignored.

Layout, encoding and sources: docs/datasets.md §6.
"""

from __future__ import annotations

from mmseg.datasets import CityscapesDataset

from cliptrase.datasets.base import OVSSDataset
from cliptrase.datasets.spec import MB, register_dataset


@register_dataset(
    sources=("cityscapes",),
    prepared_bytes=30 * MB,
    converter="cliptrase.datasets.prepare.cityscapes:prepare_cityscapes",
    column=6,
    standard=True,
)
class Cityscapes19Dataset(OVSSDataset, CityscapesDataset):
    """mmseg's ``CityscapesDataset``: images found by a recursive scan of ``leftImg8bit/val/<city>/``.

    The labels are trainIds, not the 34-id ``labelIds`` of the download: run the converter first.
    """

    CONFIG_NAME = "cityscapes"
    DATA_SUBDIR = "cityscapes"
    IMG_DIR = "leftImg8bit/val"
    ANN_DIR = "gtFine/val"
    IMG_SUFFIX = "_leftImg8bit.png"
    SEG_MAP_SUFFIX = "_gtFine_labelTrainIds.png"
    EXPECTED_VAL_IMAGES = 500
    METAINFO = CityscapesDataset.METAINFO
