"""``bench.py stats``: the bootstrap of ``cliptrase-table --ci`` on synthetic per-image records
(COCO-Stuff-sized by default): seconds for one row's intervals and for a paired comparison."""

from __future__ import annotations

import time

import numpy as np
import torch


def synthetic_counts(images: int, classes: int, definition: str, seed: int):
    """Per-image confusion counts like a real run: ~12 GT classes per image, 80 % of pixels right."""
    from cliptrase.records.per_image import ImageCells, PerImageCounts

    rng = np.random.default_rng(seed)
    side = classes + 1 if definition == "mmseg_iou" else classes
    entries = []
    for i in range(images):
        present = rng.choice(classes, size=12, replace=False)
        gt = rng.choice(present, size=20000)
        pred = np.where(rng.random(20000) < 0.8, gt, rng.choice(present, size=20000))
        hist = np.bincount(gt * side + pred, minlength=side * side)
        cells = np.flatnonzero(hist)
        entries.append(ImageCells(f"img{i:05d}", cells, hist[cells]))
    return PerImageCounts.from_entries(entries, metric_definition=definition, num_classes=classes, side=side)


def bench_stats(args) -> None:
    from cliptrase.stats.bootstrap import (
        percentile_interval,
        resample_rng,
        resampled_sums,
        scores,
        share_better,
    )

    print(
        f"bootstrap: {args.images} images x {args.classes} classes x {args.resamples} resamples, "
        f"{torch.get_num_threads()} threads"
    )
    for definition in ("mmseg_iou", "paper_scores"):
        a, b = (synthetic_counts(args.images, args.classes, definition, seed) for seed in (0, 1))
        t0 = time.perf_counter()
        (sums,) = resampled_sums([a.marginals()], resample_rng(0, "bench", a.image_ids), args.resamples)
        resampled = scores(sums, definition)
        interval = percentile_interval(resampled["mIoU"])
        percentile_interval(resampled["per_class_IoU"])
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        rng = resample_rng(0, "bench", a.image_ids)
        both = resampled_sums([a.marginals(), b.marginals()], rng, args.resamples)
        ra, rb = (scores(s, definition) for s in both)
        paired = percentile_interval(ra["mIoU"] - rb["mIoU"])
        percentile_interval(ra["per_class_IoU"] - rb["per_class_IoU"])
        share = share_better(ra["mIoU"], rb["mIoU"])
        pair = time.perf_counter() - t0
        print(
            f"{definition:13s} one row, mIoU + per-class intervals: {one:.2f} s "
            f"(mIoU [{interval.lo:.2f}, {interval.hi:.2f}]); paired A vs B, both rows + differences: "
            f"{pair:.2f} s (A - B [{paired.lo:+.2f}, {paired.hi:+.2f}], A better in {100 * share:.0f} %)"
        )
