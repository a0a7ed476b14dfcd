"""COCO-Stuff-171 and COCO-Object labels from the raw COCO-Stuff-164k ``stuffthingmaps`` (val2017).

Raw maps hold ``COCO id - 1`` (0..181) and 255 = unlabeled (COCO-Stuff README). Eleven raw ids have no
annotations and are dropped; the other 171 are renumbered 0..170 in order (mmseg ``coco_stuff164k.py``,
``clsID_to_trID``). COCO-Object keeps the 80 things as 1..80 and sends every other value, stuff and
unlabeled alike, to background 0 (SCLIP/GroupViT ``cvt_coco_object.py``; docs/datasets.md §4-5). Only
val2017 is converted, so the train maps need not be unzipped (mmseg's script asserts all 123,287).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from cliptrase.datasets.coco import NUM_THINGS, COCOObjectDataset, COCOStuff171Dataset
from cliptrase.datasets.prepare._common import LABEL_NDIM, find_dir, link_or_copy, run_jobs, save_image_atomic

RAW_NUM_IDS = 182
UNLABELED = 255
UNUSED_RAW_IDS: frozenset[int] = frozenset({11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90})
"""Raw ids (COCO id - 1) with no annotations: COCO ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91."""

RAW_HINT = (
    "unzip val2017.zip into --raw/images and stuffthingmaps_trainval2017.zip into --raw/annotations "
    "(giving images/val2017/*.jpg and annotations/val2017/*.png)"
)
_IMAGE_DIRS = ("images/val2017", "val2017", "coco/val2017")
_RAW_LABEL_DIRS = (
    "annotations/val2017",
    "stuffthingmaps_trainval2017/val2017",
    "stuffthingmaps/val2017",
    "val2017",
)


def stuff_lut() -> np.ndarray:
    """256-entry table raw value -> COCO-Stuff-171 trainId (unused ids and 255 -> 255)."""
    lut = np.full(256, UNLABELED, dtype=np.uint8)
    used = [raw for raw in range(RAW_NUM_IDS) if raw not in UNUSED_RAW_IDS]
    lut[used] = np.arange(len(used))
    return lut


def object_lut() -> np.ndarray:
    """256-entry table raw value -> COCO-Object label: things 1..80, everything else 0."""
    stuff = stuff_lut()
    return np.where(stuff < NUM_THINGS, stuff + 1, 0).astype(np.uint8)


def _convert_one(src: Path, dst: Path, *, lut: np.ndarray) -> None:
    with Image.open(src) as image:
        raw = np.asarray(image)
    if raw.ndim != LABEL_NDIM or raw.dtype != np.uint8:
        raise ValueError(f"expected a single-channel 8-bit map, got shape {raw.shape} dtype {raw.dtype}")
    save_image_atomic(lut[raw], dst, "PNG")


def _raw_label_files(raw: Path) -> list[Path]:
    for candidate in _RAW_LABEL_DIRS:
        folder = raw / candidate
        files = sorted(p for p in folder.glob("*.png") if "TrainIds" not in p.name) if folder.is_dir() else []
        if files:
            return files
    raise FileNotFoundError(
        f"no raw stuffthingmaps PNGs in {', '.join(str(raw / c) for c in _RAW_LABEL_DIRS)}; {RAW_HINT}"
    )


def _prepare(raw: Path, out: Path, *, workers: int, facts: type, lut: np.ndarray, desc: str) -> Path:
    image_dir = find_dir(raw, _IMAGE_DIRS, "val2017 images", RAW_HINT)
    labels = _raw_label_files(raw)
    dst = out / facts.DATA_SUBDIR
    label_jobs = [(src, dst / facts.ANN_DIR / f"{src.stem}{facts.SEG_MAP_SUFFIX}") for src in labels]
    run_jobs(partial(_convert_one, lut=lut), label_jobs, workers=workers, desc=desc)
    image_jobs = [(image_dir / f"{src.stem}.jpg", dst / facts.IMG_DIR / f"{src.stem}.jpg") for src in labels]
    missing = [str(src) for src, _ in image_jobs if not src.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} val2017 images missing in {image_dir} (first: {missing[0]}); {RAW_HINT}"
        )
    if (dst / facts.IMG_DIR).resolve() != image_dir.resolve():
        run_jobs(link_or_copy, image_jobs, workers=workers, desc="coco val2017 images")
    return dst


def prepare_coco_stuff171(raw: Path, out: Path, *, workers: int) -> Path:
    """Write ``*_labelTrainIds.png`` (0..170, 255) and the images under ``out/coco_stuff164k``."""
    return _prepare(
        raw, out, workers=workers, facts=COCOStuff171Dataset, lut=stuff_lut(), desc="coco-stuff 171"
    )


def prepare_coco_object(raw: Path, out: Path, *, workers: int) -> Path:
    """Write ``*_instanceTrainIds.png`` (0..80) and the images under ``out/coco_stuff164k``."""
    return _prepare(raw, out, workers=workers, facts=COCOObjectDataset, lut=object_lut(), desc="coco-object")
