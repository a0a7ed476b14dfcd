"""Synthetic experiments for the statistics tests: records + ``per_image.npz`` from per-image matrices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cliptrase.engine.paper_metric import paper_scores
from cliptrase.records.per_image import ImageCells, PerImageCounts, write_per_image
from cliptrase.records.results import ResultRecord, config_hash, write_record
from cliptrase.stats.bootstrap import mmseg_scores

CLASSES = ("sky", "grass", "road")


def random_matrices(rng: np.random.Generator, n_images: int, n_classes: int = 3) -> list[np.ndarray]:
    """Per-image confusion matrices with a strong diagonal and some classes absent per image."""
    out = []
    for _ in range(n_images):
        hist = rng.integers(0, 30, size=(n_classes, n_classes)) + np.diag(rng.integers(50, 200, n_classes))
        hist[rng.integers(0, n_classes)] = 0  # one class absent from this image's GT
        out.append(hist.astype(np.int64))
    return out


def vocabulary_matrices(
    rng: np.random.Generator, n_images: int, n_classes: int, *, per_image: int = 8, skill: float = 0.6
) -> list[np.ndarray]:
    """Per-image matrices of a large vocabulary as real images have them: ``per_image`` GT classes per
    image, each predicted right with probability about ``skill`` and otherwise as another present class."""
    out = []
    for _ in range(n_images):
        present = rng.choice(n_classes, size=min(per_image, n_classes), replace=False)
        hist = np.zeros((n_classes, n_classes), dtype=np.int64)
        for gt in present:
            area = int(rng.integers(200, 2000))
            right = int(rng.binomial(area, skill))
            hist[gt, gt] += right
            hist[gt, rng.choice(present)] += area - right
        out.append(hist)
    return out


def counts_of(matrices: Sequence[np.ndarray], definition: str, ids: Sequence[str]) -> PerImageCounts:
    """Pack matrices as a metric would (mmseg: an empty extra row/column for out-of-range labels)."""
    c = matrices[0].shape[0]
    side = c + 1 if definition == "mmseg_iou" else c
    entries = []
    for image_id, hist in zip(ids, matrices):
        padded = np.zeros((side, side), dtype=np.int64)
        padded[:c, :c] = hist
        cells = np.flatnonzero(padded.ravel())
        entries.append(ImageCells(image_id, cells, padded.ravel()[cells]))
    return PerImageCounts.from_entries(entries, metric_definition=definition, num_classes=c, side=side)


def summary(total: np.ndarray, definition: str) -> tuple[dict[str, float], list[float]]:
    """Record metrics and per-class IoU of a summed matrix, as the metric reports them (2 dp)."""
    if definition == "paper_scores":
        scores = paper_scores(total)
        return {k: v for k, v in scores.items() if k != "per_class_IoU"}, scores["per_class_IoU"]
    diag, gt, pred = np.diag(total).astype(float), total.sum(1).astype(float), total.sum(0).astype(float)
    scores = mmseg_scores(diag, gt, pred)
    per_class = [round(float(v), 2) for v in scores.pop("per_class_IoU")]
    return {k: round(float(v), 2) for k, v in scores.items()}, per_class


def write_run(
    exp_dir: Path,
    row: str,
    column: str,
    matrices: Sequence[np.ndarray],
    *,
    definition: str = "mmseg_iou",
    ids: Sequence[str] | None = None,
    per_image: bool = True,
    class_names: Sequence[str] | None = None,
) -> ResultRecord:
    """A complete run folder: ``metrics.json`` (+ ``per_image.npz`` unless ``per_image`` is False); the
    class names default to the first of :data:`CLASSES` (give ``class_names`` for larger matrices)."""
    ids = list(ids) if ids is not None else [f"img{i:04d}" for i in range(len(matrices))]
    metrics, per_class = summary(np.sum(matrices, axis=0), definition)
    cfg = {"row": row, "dataset": column, "definition": definition}
    run = f"{column}__{row.replace(' | ', '_')}"
    record = ResultRecord(
        experiment=exp_dir.name,
        run=run,
        row=row,
        column=column,
        metric_definition=definition,
        metrics=metrics,
        class_names=list(class_names or CLASSES[: matrices[0].shape[0]]),
        per_class={"IoU": per_class},
        config=cfg,
        config_hash=config_hash(cfg),
        provenance={"date": "2025-01-01T00:00:00+00:00"},
    )
    if per_image:
        write_per_image(counts_of(matrices, definition, ids), exp_dir / run, config_hash=record.config_hash)
    write_record(record, exp_dir / run)
    return record


def one_class_record(row: str, column: str, miou: float, **provenance: object) -> ResultRecord:
    """A complete record of ``row`` on ``column`` with one class and that mIoU (table-layout tests)."""
    return ResultRecord(
        experiment="e",
        run=f"{column}__{row}",
        row=row,
        column=column,
        metric_definition="paper_scores",
        metrics={"mIoU": miou},
        class_names=["a"],
        per_class={"IoU": [miou]},
        config={},
        config_hash="0" * 16,
        provenance=dict(provenance),
    )
