"""COCO-Stuff-164k val2017 (5,000 images): COCO-Stuff-171 and COCO-Object (background + 80 things).

Both live under one root. Stuff reads mmseg's ``*_labelTrainIds.png`` (0..170, 255 unlabeled); Object reads
the ``*_instanceTrainIds.png`` semantic maps of SCLIP/GroupViT's converter, where every stuff *and* every
unlabeled pixel is background 0, so nothing is ignored (docs/datasets.md §4-5).
"""

from __future__ import annotations

from typing import ClassVar

from mmseg.datasets import COCOStuffDataset

from cliptrase.datasets.base import OVSSDataset
from cliptrase.datasets.spec import MB, register_dataset

NUM_THINGS = 80
"""The first 80 of the 171 COCO-Stuff classes are the things, in COCO id order."""


class _COCOFacts(OVSSDataset):
    """Layout shared by the two COCO benchmarks."""

    DATA_SUBDIR = "coco_stuff164k"
    IMG_DIR = "images/val2017"
    ANN_DIR = "annotations/val2017"
    EXPECTED_VAL_IMAGES = 5000


@register_dataset(
    sources=("coco_stuff164k",),
    prepared_bytes=120 * MB,
    converter="cliptrase.datasets.prepare.coco:prepare_coco_stuff171",
    column=5,
    standard=True,
    paper=3,
)
class COCOStuff171Dataset(_COCOFacts, COCOStuffDataset):
    """mmseg's ``COCOStuffDataset`` (164k variant): 171 classes, 255 ignored, no reduce_zero_label."""

    CONFIG_NAME = "coco_stuff171"
    SEG_MAP_SUFFIX = "_labelTrainIds.png"
    METAINFO = COCOStuffDataset.METAINFO


@register_dataset(
    sources=("coco_stuff164k",),
    prepared_bytes=120 * MB,
    converter="cliptrase.datasets.prepare.coco:prepare_coco_object",
    column=2,
    standard=True,
    paper=2,
    # The authors score COCO-Object on the 171-class maps (protocols/paper.py PAPER_GT): prepare both.
    paper_prepare_also=("coco_stuff171",),
)
class COCOObjectDataset(_COCOFacts):
    """81 classes: ``background`` + the 80 things, as SCLIP's ``COCOObjectDataset``."""

    CONFIG_NAME = "coco_object"
    HAS_BACKGROUND = True
    SEG_MAP_SUFFIX = "_instanceTrainIds.png"
    METAINFO: ClassVar[dict] = dict(
        classes=("background", *COCOStuffDataset.METAINFO["classes"][:NUM_THINGS]),
        palette=[[0, 0, 0], *COCOStuffDataset.METAINFO["palette"][:NUM_THINGS]],
    )
