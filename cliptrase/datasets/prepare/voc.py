"""VOC21/VOC20: bring the val split of ``VOCtrainval_11-May-2012.tar`` into the data root, unconverted.

The raw ``SegmentationClass`` palette PNGs are the labels as they are (docs/datasets.md §2: no converter for
val); this step only puts the 1,449 val images, their labels and ``val.txt`` where the configs look,
hard-linking when possible.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cliptrase.datasets.prepare._common import find_dir, link_or_copy, read_split, run_jobs, write_split
from cliptrase.datasets.voc import VOC21Dataset

logger = logging.getLogger(__name__)

RAW_HINT = (
    "extract VOCtrainval_11-May-2012.tar into the --raw directory (`tar xf VOCtrainval_11-May-2012.tar`)"
)


def prepare_voc(raw: Path, out: Path, *, workers: int) -> Path:
    """Copy (or hard-link) the VOC 2012 val split from ``raw`` to ``out/VOCdevkit/VOC2012``."""
    facts = VOC21Dataset
    src = find_dir(
        raw, ["VOCdevkit/VOC2012", "VOC2012", "."], "VOC2012 folder", RAW_HINT,
        required=[facts.IMG_DIR, facts.ANN_DIR, facts.SPLIT],
    )  # fmt: skip
    dst = out / facts.DATA_SUBDIR
    stems = read_split(src / facts.SPLIT)
    if not stems:
        raise ValueError(f"split file {src / facts.SPLIT} is empty; {RAW_HINT}")
    if dst.resolve() == src.resolve():
        logger.info("VOC2012 already at %s; nothing to copy", dst)
        return dst
    jobs = []
    for stem in stems:
        for folder, suffix in ((facts.IMG_DIR, facts.IMG_SUFFIX), (facts.ANN_DIR, facts.SEG_MAP_SUFFIX)):
            jobs.append((src / folder / f"{stem}{suffix}", dst / folder / f"{stem}{suffix}"))
    missing = [str(s) for s, _ in jobs if not s.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} files of the val split missing in {src} (first: {missing[0]})"
        )
    run_jobs(link_or_copy, jobs, workers=workers, desc="voc2012 val")
    write_split(stems, dst / facts.SPLIT)
    return dst
