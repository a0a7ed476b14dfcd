"""Cityscapes: ``*_gtFine_labelTrainIds.png`` (19 trainIds, 255 ignore) from the downloaded ``labelIds``.

The 34 raw ids map to trainIds through cityscapesScripts' ``labels`` table when that package is installed,
else through the same table restated below (``CSS:cityscapesscripts/helpers/labels.py``; docs/datasets.md §6).
Mapping ``labelIds`` pixel-wise equals rendering the polygons in ``trainIds`` mode (mmseg's converter), since
both paint the same polygons in the same order. Only val is converted; images are hard-linked when possible.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from cliptrase.datasets.cityscapes import Cityscapes19Dataset
from cliptrase.datasets.prepare._common import LABEL_NDIM, find_dir, link_or_copy, run_jobs, save_image_atomic

logger = logging.getLogger(__name__)

IGNORE = 255
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
"""labelId -> trainId of the 19 evaluated classes; every other id (0..33) is 255."""

RAW_HINT = (
    "unzip gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip into --raw "
    "(giving gtFine/val/<city>/ and leftImg8bit/val/<city>/)"
)


def id_to_train_id() -> dict[int, int]:
    """The labelId -> trainId table: cityscapesScripts' when installed, else :data:`ID_TO_TRAIN_ID`."""
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError:
        return dict(ID_TO_TRAIN_ID)
    return {label.id: label.trainId for label in labels if label.id >= 0 and 0 <= label.trainId < IGNORE}


def train_id_lut() -> np.ndarray:
    """256-entry table labelId -> trainId (255 for ids outside the 19 classes)."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for label_id, train_id in id_to_train_id().items():
        lut[label_id] = train_id
    return lut


def _convert_one(src: Path, dst: Path, *, lut: np.ndarray) -> None:
    with Image.open(src) as image:
        label_ids = np.asarray(image)
    if label_ids.ndim != LABEL_NDIM or label_ids.dtype != np.uint8:
        raise ValueError(
            f"expected a single-channel 8-bit labelIds map, got {label_ids.shape} {label_ids.dtype}"
        )
    save_image_atomic(lut[label_ids], dst, "PNG")


def prepare_cityscapes(raw: Path, out: Path, *, workers: int) -> Path:
    """Write val trainId labels and images under ``out/cityscapes``."""
    facts = Cityscapes19Dataset
    src = find_dir(
        raw, ["cityscapes", "."], "Cityscapes folder", RAW_HINT, required=[facts.ANN_DIR, facts.IMG_DIR]
    )
    dst = out / facts.DATA_SUBDIR
    label_files = sorted((src / facts.ANN_DIR).rglob(f"*{LABEL_IDS_SUFFIX}"))
    if not label_files:
        raise FileNotFoundError(f"no *{LABEL_IDS_SUFFIX} under {src / facts.ANN_DIR}; {RAW_HINT}")
    label_jobs, image_jobs = [], []
    for label in label_files:
        relative = label.relative_to(src / facts.ANN_DIR)
        stem = relative.as_posix()[: -len(LABEL_IDS_SUFFIX)]
        label_jobs.append((label, dst / facts.ANN_DIR / f"{stem}{facts.SEG_MAP_SUFFIX}"))
        image_jobs.append(
            (
                src / facts.IMG_DIR / f"{stem}{facts.IMG_SUFFIX}",
                dst / facts.IMG_DIR / f"{stem}{facts.IMG_SUFFIX}",
            )
        )
    missing = [str(s) for s, _ in image_jobs if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} val images missing (first: {missing[0]}); {RAW_HINT}")
    run_jobs(partial(_convert_one, lut=train_id_lut()), label_jobs, workers=workers, desc="cityscapes val")
    if dst.resolve() != src.resolve():
        run_jobs(link_or_copy, image_jobs, workers=workers, desc="cityscapes val images")
    return dst
