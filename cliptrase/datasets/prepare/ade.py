"""ADE20K-150: ``ADEChallengeData2016`` is already in the layout mmseg reads; this only places the val half.

Labels stay as downloaded (uint8, 0 = other, 1..150 = classes); ``reduce_zero_label`` is the dataset's job
(docs/datasets.md §7). Images and labels are hard-linked when possible.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cliptrase.datasets.ade import ADE150Dataset
from cliptrase.datasets.prepare._common import find_dir, link_or_copy, run_jobs

logger = logging.getLogger(__name__)

RAW_HINT = "unzip ADEChallengeData2016.zip into --raw (`unzip ADEChallengeData2016.zip -d <raw>`)"


def prepare_ade150(raw: Path, out: Path, *, workers: int) -> Path:
    """Copy (or hard-link) ``images/validation`` and ``annotations/validation`` to ``out/ade/...``."""
    facts = ADE150Dataset
    src = find_dir(
        raw, ["ADEChallengeData2016", "ade/ADEChallengeData2016", "."], "ADEChallengeData2016", RAW_HINT,
        required=[facts.IMG_DIR, facts.ANN_DIR],
    )  # fmt: skip
    dst = out / facts.DATA_SUBDIR
    if dst.resolve() == src.resolve():
        logger.info("ADEChallengeData2016 already at %s; nothing to copy", dst)
        return dst
    images = sorted((src / facts.IMG_DIR).glob(f"*{facts.IMG_SUFFIX}"))
    if not images:
        raise FileNotFoundError(f"no {facts.IMG_SUFFIX} images in {src / facts.IMG_DIR}; {RAW_HINT}")
    jobs = []
    for image in images:
        label = src / facts.ANN_DIR / f"{image.stem}{facts.SEG_MAP_SUFFIX}"
        if not label.is_file():
            raise FileNotFoundError(f"label {label} of {image} missing; {RAW_HINT}")
        jobs.append((image, dst / facts.IMG_DIR / image.name))
        jobs.append((label, dst / facts.ANN_DIR / label.name))
    run_jobs(link_or_copy, jobs, workers=workers, desc="ade20k-150 val")
    return dst
