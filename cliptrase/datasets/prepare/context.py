"""PC60/PC59: ``SegmentationClassContext`` from PASCAL-in-Detail's ``trainval_merged.json``, without Detail.

mmseg's converter (``tools/dataset_converters/pascal_context.py``) needs the Detail API, which is not on
PyPI. This one reads the JSON directly: per val image it paints each segmentation annotation's
``category_id`` in file order onto a zero canvas (Detail ``getMask``, class-mask branch) and maps the 60
Detail ids to 0..59 (mmseg's ``_mapping``). Output: uint8 PNGs, 0 = background, 1..59 = the classes, plus the
val images and ``ImageSets/SegmentationContext/val.txt`` (docs/datasets.md §3a). Only val is converted.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cliptrase.datasets.context import Context60Dataset
from cliptrase.datasets.prepare._common import (
    find_dir,
    find_file,
    link_or_copy,
    run_jobs,
    save_image_atomic,
    write_split,
)
from cliptrase.datasets.prepare._rle import segmentation_decode

logger = logging.getLogger(__name__)

DETAIL_IDS: tuple[int, ...] = (
    0, 2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115, 144,
    158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349, 354, 355,
    360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458,
)  # fmt: skip
"""Detail category ids of PC60's classes; position = PC60 label (mmseg converter ``_mapping``)."""

DETAIL_JSON = "trainval_merged.json"
VAL_PHASE = "val"
RAW_HINT = (
    "extract VOCtrainval_03-May-2010.tar into --raw and put trainval_merged.json next to VOCdevkit "
    "(or inside VOCdevkit/VOC2010)"
)

_DETAIL_TO_PC60 = {detail_id: label for label, detail_id in enumerate(DETAIL_IDS)}

Segment = tuple[int, Any]  # (Detail category id, COCO segmentation)


def find_voc2010(raw: Path) -> Path:
    """The extracted VOC2010 folder (with ``JPEGImages``) under ``raw``."""
    return find_dir(
        raw, ["VOCdevkit/VOC2010", "VOC2010", "."], "VOC2010 folder", RAW_HINT, required=["JPEGImages"]
    )


def find_detail_json(raw: Path, voc2010: Path) -> Path:
    """``trainval_merged.json`` next to VOCdevkit, in ``raw`` or in the VOC2010 folder."""
    return find_file(
        [raw / DETAIL_JSON, voc2010 / DETAIL_JSON, voc2010.parent / DETAIL_JSON], DETAIL_JSON, RAW_HINT
    )


def load_detail_val(json_path: Path) -> tuple[dict[str, dict], dict[str, list[Segment]]]:
    """Read the val images and their segments from ``trainval_merged.json``.

    Returns:
        ``{stem: image record}`` for images whose ``phase`` is ``val`` and ``{stem: [(category_id,
        segmentation), ...]}`` in file order, which is the painting order.
    """
    with json_path.open() as handle:
        detail = json.load(handle)
    for key in ("images", "annos_segmentation"):
        if key not in detail:
            raise KeyError(f"{json_path} has no {key!r} list; is it PASCAL-in-Detail's {DETAIL_JSON}?")
    if detail["images"] and "phase" not in detail["images"][0]:
        raise KeyError(f"images in {json_path} have no 'phase'; cannot tell the val split")
    stem_by_id = {
        img["image_id"]: Path(img["file_name"]).stem for img in detail["images"] if img["phase"] == VAL_PHASE
    }
    images = {stem_by_id[img["image_id"]]: img for img in detail["images"] if img["image_id"] in stem_by_id}
    segments: dict[str, list[Segment]] = defaultdict(list)
    for anno in detail["annos_segmentation"]:
        stem = stem_by_id.get(anno["image_id"])
        if stem is not None:
            segments[stem].append((int(anno["category_id"]), anno["segmentation"]))
    return images, segments


def context_label_map(height: int, width: int, segments: Sequence[Segment]) -> np.ndarray:
    """Paint the segments in order and map Detail ids to PC60 labels; ids outside the 60 become 0."""
    labels = np.zeros((height, width), dtype=np.uint8)
    for category_id, segmentation in segments:
        labels[segmentation_decode(segmentation, height, width)] = _DETAIL_TO_PC60.get(category_id, 0)
    return labels


def _convert_one(payload: tuple[int, int, list[Segment]], dst: Path) -> None:
    height, width, segments = payload
    save_image_atomic(context_label_map(height, width, segments), dst, "PNG")


def prepare_context(raw: Path, out: Path, *, workers: int) -> Path:
    """Write PC60/PC59 val labels, images and split under ``out/VOCdevkit/VOC2010``."""
    facts = Context60Dataset
    voc2010 = find_voc2010(raw)
    images, segments = load_detail_val(find_detail_json(raw, voc2010))
    if not images:
        raise ValueError(f"no val images in {DETAIL_JSON}; {RAW_HINT}")
    unknown = {cat for segs in segments.values() for cat, _ in segs} - set(DETAIL_IDS)
    if unknown:
        logger.warning(
            "Detail category ids %s are not PC60 classes; their pixels become background", sorted(unknown)
        )
    dst = out / facts.DATA_SUBDIR
    label_jobs = [
        ((int(img["height"]), int(img["width"]), segments.get(stem, [])), dst / facts.ANN_DIR / f"{stem}.png")
        for stem, img in sorted(images.items())
    ]
    run_jobs(_convert_one, label_jobs, workers=workers, desc="pascal context 59/60")
    copy_val_images(voc2010, dst, sorted(images), workers=workers)
    write_split(images, dst / facts.SPLIT)
    return dst


def copy_val_images(voc2010: Path, dst: Path, stems: Sequence[str], *, workers: int) -> None:
    """Hard-link or copy the val JPEGs into ``dst/JPEGImages`` (nothing to do when in place)."""
    if dst.resolve() == voc2010.resolve():
        return
    jobs = [(voc2010 / "JPEGImages" / f"{s}.jpg", dst / "JPEGImages" / f"{s}.jpg") for s in stems]
    missing = [str(src) for src, _ in jobs if not src.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} val images missing in {voc2010 / 'JPEGImages'} (first: {missing[0]})"
        )
    run_jobs(link_or_copy, jobs, workers=workers, desc="voc2010 val images")
