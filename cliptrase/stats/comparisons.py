"""Paired comparisons of an experiment's rows, from their per-image records (numbers only).

:func:`bootstrap_records` resamples the images of every dataset once and applies each row's metric to
the same resamples (:mod:`cliptrase.stats.bootstrap`); :func:`compare_rows` gives the paired difference of
two rows per dataset, its interval and the share of resamples where the first row is better. Rows are
compared only on the same images under the same metric definition. Intervals on a table's cells and the
Markdown/CSV of both are in :mod:`cliptrase.reporting.stats_tables`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cliptrase.records.per_image import PER_IMAGE_FILE, PerImageCounts, UnusablePerImageError, read_per_image
from cliptrase.records.results import ResultRecord
from cliptrase.stats.bootstrap import (
    PER_CLASS,
    Interval,
    percentile_interval,
    resample_rng,
    resampled_sums,
    scores,
    share_better,
)

logger = logging.getLogger(__name__)

Key = tuple[str, str]
"""(row label, dataset column)."""


@dataclass(frozen=True)
class Sample:
    """Resampled and full-sample values of one (row, column).

    Attributes:
        values: (R,) resampled values of the tabulated metric.
        per_class: (R, C) resampled per-class IoU.
        point: full-sample value (unrounded; the record holds it rounded).
        point_per_class: (C,) full-sample per-class IoU.
        images: image stems in the canonical (sorted) order the resamples index.
        class_names: class names of the record.
    """

    values: np.ndarray
    per_class: np.ndarray
    point: float
    point_per_class: np.ndarray
    images: tuple[str, ...]
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Bootstrap:
    """Resamples of every (row, column) of one metric definition that has per-image records."""

    metric: str
    metric_definition: str
    n_resamples: int
    seed: int
    samples: dict[Key, Sample]
    missing: tuple[Key, ...] = ()
    """(row, column) records without a per-image file (made before they existed): no intervals."""
    unusable: tuple[tuple[Key, str], ...] = ()
    """(row, column) records whose per-image file exists but cannot be used, with the reason (the file,
    the problem, how to recompute it): no intervals."""


@dataclass(frozen=True)
class Difference:
    """Paired difference A - B on one dataset (or the average): value, interval, share of A > B."""

    value: float
    interval: Interval
    share_a_better: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.interval.excludes_zero()


@dataclass(frozen=True)
class ClassDifferences:
    """Per-class IoU of rows A and B on one dataset, the difference and its paired interval (NaN where a
    class is absent from the GT)."""

    class_names: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    diff: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


@dataclass(frozen=True)
class Comparison:
    """Row A against row B over the datasets both have (paired bootstrap)."""

    a: str
    b: str
    metric: str
    metric_definition: str
    cells: dict[str, Difference]
    avg: Difference
    per_class: dict[str, ClassDifferences] = field(default_factory=dict)


def latest_records(records: Sequence[ResultRecord]) -> list[ResultRecord]:
    """One record per (row, column), the newest by provenance date (the table's own rule)."""
    kept: dict[Key, ResultRecord] = {}
    for rec in records:
        old = kept.get((rec.row, rec.column))
        date = str(rec.provenance.get("date") or "")
        if old is None or date >= str(old.provenance.get("date") or ""):
            kept[(rec.row, rec.column)] = rec
    return list(kept.values())


def _canonical(counts: PerImageCounts) -> PerImageCounts:
    """Images in sorted-stem order, so runs that list the same images differently still pair."""
    order = np.argsort(np.array(counts.image_ids, dtype=np.str_), kind="stable")
    return counts if np.array_equal(order, np.arange(len(order))) else counts.select(order)


def bootstrap_records(
    records: Sequence[ResultRecord],
    experiment_dir: Path,
    metric: str,
    *,
    n_resamples: int,
    seed: int,
) -> Bootstrap:
    """Resample every dataset's images once and evaluate every row of one metric definition on them.

    Rows of a dataset evaluated on the same images share the resamples; a row with other images (e.g. a
    ``max_images`` run) gets its own. Records without a per-image file are listed in ``missing``, those
    whose file is unreadable or stale in ``unusable`` (with the reason, also logged as a warning).

    Raises:
        ValueError: records of several metric definitions, or a metric the definition has no bootstrap of.
    """
    definitions = sorted({r.metric_definition for r in records})
    if len(definitions) != 1:
        raise ValueError(f"bootstrap one metric definition at a time, found {definitions}")
    groups: dict[tuple[str, tuple[str, ...]], list[tuple[ResultRecord, PerImageCounts]]] = {}
    missing: list[Key] = []
    unusable: list[tuple[Key, str]] = []
    for rec in latest_records(records):
        try:
            counts = read_per_image(experiment_dir, rec)
        except UnusablePerImageError as err:
            logger.warning("ignoring per-image file: %s", err)
            unusable.append(((rec.row, rec.column), str(err)))
            continue
        if counts is None or counts.n_images == 0:
            if counts is None:
                logger.info("run %s has no %s (older record): no intervals for it", rec.run, PER_IMAGE_FILE)
            missing.append((rec.row, rec.column))
            continue
        counts = _canonical(counts)
        groups.setdefault((rec.column, counts.image_ids), []).append((rec, counts))
    samples: dict[Key, Sample] = {}
    for (column, images), members in groups.items():
        rng = resample_rng(seed, column, images)
        sums = resampled_sums([c.marginals() for _, c in members], rng, n_resamples)
        for (rec, counts), summed in zip(members, sums):
            samples[(rec.row, column)] = _sample(rec, counts, summed, metric)
    return Bootstrap(
        metric, definitions[0], n_resamples, seed, samples, tuple(sorted(missing)), tuple(sorted(unusable))
    )


def _sample(rec: ResultRecord, counts: PerImageCounts, summed: np.ndarray, metric: str) -> Sample:
    resampled = scores(summed, rec.metric_definition)
    point = scores(counts.marginals().sum(axis=1), rec.metric_definition)
    if metric not in resampled:
        raise ValueError(
            f"no bootstrap of metric {metric!r} under {rec.metric_definition}; "
            f"choose one of: {', '.join(k for k in resampled if k != PER_CLASS)}"
        )
    return Sample(
        values=resampled[metric],
        per_class=resampled[PER_CLASS],
        point=float(point[metric]),
        point_per_class=point[PER_CLASS],
        images=counts.image_ids,
        class_names=tuple(rec.class_names),
    )


# -------------------------------------------------------------------------------------------- comparisons


def resolve_row(label: str, rows: Sequence[str]) -> str:
    """The row named ``label``: an exact label, else the one row with ``label`` as one of its `` | ``
    fields (``clip`` picks ``clip | ViT-B-16 | standard``), else a ``ValueError`` listing the rows."""
    if label in rows:
        return label
    matches = [r for r in rows if label in (f.strip() for f in r.split("|"))]
    if len(matches) == 1:
        return matches[0]
    listing = "; ".join(rows)
    if matches:
        raise ValueError(f"row {label!r} is ambiguous: it matches {'; '.join(matches)}; give the full label")
    raise ValueError(f"no row {label!r}; rows are: {listing}")


def _check_comparable(a: Sample, b: Sample, row_a: str, row_b: str, column: str) -> None:
    if a.images != b.images:
        common = len(set(a.images) & set(b.images))
        raise ValueError(
            f"rows {row_a!r} and {row_b!r} were evaluated on different images on {column} "
            f"({len(a.images)} and {len(b.images)} images, {common} in common); a paired comparison needs "
            "the same images: re-run both on the same split without max_images"
        )
    if a.class_names != b.class_names:
        raise ValueError(f"rows {row_a!r} and {row_b!r} have different class lists on {column}")


def _difference(a: np.ndarray, b: np.ndarray, point: float) -> Difference:
    return Difference(point, percentile_interval(a - b), share_better(a, b))


def shared_columns(boot: Bootstrap, row_a: str, row_b: str) -> list[str]:
    """Datasets where both rows have per-image records."""
    return sorted({c for r, c in boot.samples if r == row_a} & {c for r, c in boot.samples if r == row_b})


def compare_rows(boot: Bootstrap, records: Sequence[ResultRecord], row_a: str, row_b: str) -> Comparison:
    """Paired bootstrap of row A against row B on every dataset where both have per-image records.

    Raises:
        ValueError: unknown or ambiguous row, rows of different metric definitions, rows evaluated on
            different images, or no dataset where both have per-image records.
    """
    definitions = {r.row: r.metric_definition for r in records}
    a, b = (resolve_row(x, sorted(definitions)) for x in (row_a, row_b))
    if definitions[a] != definitions[b]:
        raise ValueError(
            f"rows {a!r} ({definitions[a]}) and {b!r} ({definitions[b]}) use different metric definitions, "
            "whose numbers are not comparable"
        )
    if definitions[a] != boot.metric_definition:
        raise ValueError(f"the bootstrap is of {boot.metric_definition}, the rows of {definitions[a]}")
    columns = shared_columns(boot, a, b)
    if not columns:
        raise ValueError(f"rows {a!r} and {b!r} share no dataset with per-image records to compare on")
    cells: dict[str, Difference] = {}
    per_class: dict[str, ClassDifferences] = {}
    for column in columns:
        sa, sb = boot.samples[(a, column)], boot.samples[(b, column)]
        _check_comparable(sa, sb, a, b, column)
        cells[column] = _difference(sa.values, sb.values, sa.point - sb.point)
        bounds = percentile_interval(sa.per_class - sb.per_class)
        per_class[column] = ClassDifferences(
            sa.class_names,
            sa.point_per_class,
            sb.point_per_class,
            sa.point_per_class - sb.point_per_class,
            bounds[0],
            bounds[1],
        )
    mean_a = np.mean([boot.samples[(a, c)].values for c in columns], axis=0)
    mean_b = np.mean([boot.samples[(b, c)].values for c in columns], axis=0)
    avg = _difference(mean_a, mean_b, math.fsum(cells[c].value for c in columns) / len(columns))
    return Comparison(a, b, boot.metric, boot.metric_definition, cells, avg, per_class)
