"""PC459: uint16 ``.tif`` labels from the full-vocabulary PASCAL Context release (``trainval.tar.gz``).

Each ``trainval/<id>.mat`` holds ``LabelMap`` with 1-based ids into the 459-entry ``labels.txt``; the label
is ``LabelMap - 1`` (CAT-Seg's ``prepare_pascal_context_459.py``, CLIPtrase's 459-class script), written as a
16-bit TIFF so ids >= 256 survive. A 0 in ``LabelMap`` (unlabelled, if any) becomes 65535, the ignore index.
Layout: CAT-Seg/ProxyCLIP ``VOC2010/annotations_detectron2/pc459_val`` with the Detail val split
(docs/datasets.md §3c). Ids of the split without a ``.mat`` are skipped with a warning (CAT-Seg's list has
5,104).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import features
from scipy.io import loadmat

from cliptrase.datasets.context import Context459Dataset
from cliptrase.datasets.prepare._common import find_dir, read_split, run_jobs, save_image_atomic, write_split
from cliptrase.datasets.prepare.context import (
    DETAIL_JSON,
    copy_val_images,
    find_voc2010,
    load_detail_val,
)

logger = logging.getLogger(__name__)

LABEL_KEY = "LabelMap"
IGNORE = 65535
RAW_HINT = (
    "extract trainval.tar.gz (PASCAL Context full annotations) so that trainval/<id>.mat sits in --raw or in "
    f"VOCdevkit/VOC2010, and provide the val split ({DETAIL_JSON} or a prepared context59)"
)


def tiff_options() -> dict[str, str]:
    """LZW-compress the TIFFs when Pillow has libtiff (16-bit label maps compress well); plain otherwise."""
    return {"compression": "tiff_lzw"} if features.check_codec("libtiff") else {}


def pc459_label_map(label_map: np.ndarray) -> np.ndarray:
    """``LabelMap - 1`` as uint16, with unlabelled 0 mapped to the ignore index 65535."""
    labels = np.asarray(label_map).astype(np.int64)
    if labels.min() < 0 or labels.max() > IGNORE:
        raise ValueError(f"{LABEL_KEY} values outside 0..{IGNORE}: min {labels.min()}, max {labels.max()}")
    return np.where(labels > 0, labels - 1, IGNORE).astype(np.uint16)


def _convert_one(src: Path, dst: Path) -> None:
    mat = loadmat(str(src))
    if LABEL_KEY not in mat:
        raise KeyError(f"{src} has no {LABEL_KEY!r}")
    save_image_atomic(pc459_label_map(mat[LABEL_KEY]), dst, "TIFF", **tiff_options())


def _val_stems(raw: Path, voc2010: Path, out: Path) -> list[str]:
    """Val ids from ``trainval_merged.json`` when present, else from a prepared or shipped split file."""
    split = Context459Dataset.SPLIT
    for json_path in (raw / DETAIL_JSON, voc2010 / DETAIL_JSON, voc2010.parent / DETAIL_JSON):
        if json_path.is_file():
            return sorted(load_detail_val(json_path)[0])
    for path in (out / Context459Dataset.DATA_SUBDIR / split, voc2010 / split):
        if path.is_file() and read_split(path):
            return read_split(path)
    raise FileNotFoundError(f"val split not found (no {DETAIL_JSON}, no {split}); {RAW_HINT}")


def prepare_context459(raw: Path, out: Path, *, workers: int) -> Path:
    """Write PC459 val labels (and images and split) under ``out/VOCdevkit/VOC2010``."""
    facts = Context459Dataset
    voc2010 = find_voc2010(raw)
    mat_dir = find_dir(
        raw, ["trainval", "VOCdevkit/VOC2010/trainval", "VOC2010/trainval"], "trainval/*.mat", RAW_HINT
    )
    stems = _val_stems(raw, voc2010, out)
    dst = out / facts.DATA_SUBDIR
    present = [stem for stem in stems if (mat_dir / f"{stem}.mat").is_file()]
    if not present:
        raise FileNotFoundError(f"none of the {len(stems)} val ids has a .mat in {mat_dir}; {RAW_HINT}")
    if len(present) < len(stems):
        absent = sorted(set(stems) - set(present))
        logger.warning("%d val ids have no .mat in %s and are skipped: %s", len(absent), mat_dir, absent[:10])
    jobs = [(mat_dir / f"{s}.mat", dst / facts.ANN_DIR / f"{s}{facts.SEG_MAP_SUFFIX}") for s in present]
    run_jobs(_convert_one, jobs, workers=workers, desc="pascal context 459")
    copy_val_images(voc2010, dst, present, workers=workers)
    split_path = dst / facts.SPLIT
    if not split_path.is_file():
        write_split(present, split_path)
    return dst
