"""Confidence intervals and paired comparisons of an experiment's rows, from their per-image records.

:func:`bootstrap_records` resamples the images of every dataset once and applies each row's metric to
the same resamples (:mod:`cliptrase.evaluation.stats`); :func:`interval_table` puts a 95 % interval on
every cell and average of a :class:`~cliptrase.evaluation.tables.Table`; :func:`compare_rows` gives the
paired difference of two rows per dataset, its interval and the share of resamples where the first row
is better. Rows are compared only on the same images under the same metric definition.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cliptrase.evaluation.per_image import PerImageCounts, load_per_image
from cliptrase.evaluation.results import ResultRecord
from cliptrase.evaluation.stats import (
    PER_CLASS,
    Interval,
    percentile_interval,
    resample_rng,
    resampled_sums,
    scores,
    share_better,
)
from cliptrase.evaluation.tables import AVG, Table

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
    """(row, column) records without usable per-image files (older records): no intervals."""


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
    ``max_images`` run) gets its own. Records without a per-image file are listed in ``missing``.

    Raises:
        ValueError: records of several metric definitions, or a metric the definition has no bootstrap of.
    """
    definitions = sorted({r.metric_definition for r in records})
    if len(definitions) != 1:
        raise ValueError(f"bootstrap one metric definition at a time, found {definitions}")
    groups: dict[tuple[str, tuple[str, ...]], list[tuple[ResultRecord, PerImageCounts]]] = {}
    missing: list[Key] = []
    for rec in latest_records(records):
        counts = load_per_image(experiment_dir, rec)
        if counts is None or counts.n_images == 0:
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
    return Bootstrap(metric, definitions[0], n_resamples, seed, samples, tuple(sorted(missing)))


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


# ---------------------------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class IntervalTable:
    """A table with a bootstrap interval per measured cell and per average (None where not available)."""

    table: Table
    cells: dict[Key, Interval]
    avgs: dict[str, Interval]
    bootstrap: Bootstrap


def _row_average(boot: Bootstrap, row: str, columns: Sequence[str]) -> np.ndarray | None:
    """(R,) per-resample average over ``columns``, or None when a column has no resamples."""
    keys = [(row, c) for c in columns]
    if not keys or any(k not in boot.samples for k in keys):
        return None
    return np.mean([boot.samples[k].values for k in keys], axis=0)


def interval_table(table: Table, boot: Bootstrap) -> IntervalTable:
    """Attach to every measured cell of ``table`` its interval, and to every row average the interval of
    the per-resample average over the same datasets (datasets resampled independently)."""
    cells: dict[Key, Interval] = {}
    avgs: dict[str, Interval] = {}
    for row in table.rows:
        if row.kind != "measured":
            continue
        present = [c for c in table.columns if row.cells[c] is not None]
        for column in present:
            sample = boot.samples.get((row.label, column))
            if sample is not None:
                cells[(row.label, column)] = percentile_interval(sample.values)
        average = _row_average(boot, row.label, present)
        if average is not None:
            avgs[row.label] = percentile_interval(average)
    return IntervalTable(table, cells, avgs, boot)


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


# ---------------------------------------------------------------------------------------------- renderers


def _fmt_interval(interval: Interval | None, signed: bool = False) -> str:
    if interval is None or math.isnan(interval.lo):
        return ""
    spec = "+.2f" if signed else ".2f"
    return f" [{interval.lo:{spec}}, {interval.hi:{spec}}]"


def _fmt_value(value: float | None, spec: str) -> str:
    return "—" if value is None else f"{value:{spec}}"


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def interval_markdown(result: IntervalTable) -> str:
    """The table with ``value [lo, hi]`` cells (measured rows), a caption naming the interval."""
    table, boot = result.table, result.bootstrap
    lines = [
        f"**{table.metric} (%)** with 95 % bootstrap intervals over images ({boot.n_resamples} resamples, "
        f"seed {boot.seed}), metric definition `{table.metric_definition}`",
        "",
        "| Row | " + " | ".join([*table.columns, AVG]) + " |",
        "|---|" + "---:|" * (len(table.columns) + 1),
    ]
    for row in table.rows:
        spec = "+.2f" if row.kind == "delta" else ".2f"
        cells = [
            _fmt_value(row.cells[c], spec) + _fmt_interval(result.cells.get((row.label, c)))
            for c in table.columns
        ]
        avg = _fmt_value(row.avg, spec) + _fmt_interval(result.avgs.get(row.label))
        avg += "" if row.complete or row.avg is None else "*"
        lines.append(f"| {_md(row.label)} | " + " | ".join([*cells, avg]) + " |")
    lines += _notes(table, boot)
    return "\n".join(lines) + "\n"


def _notes(table: Table, boot: Bootstrap) -> list[str]:
    notes = []
    if any(not r.complete and r.avg is not None for r in table.rows):
        notes.append("\\* average over the available datasets only (row incomplete).")
    if boot.missing:
        runs = ", ".join(f"{r} / {c}" for r, c in boot.missing)
        notes.append(f"No interval (no per-image record, made before they existed): {runs}.")
    return ["", *notes] if notes else []


def interval_csv(result: IntervalTable) -> str:
    """Long CSV: ``row, kind, column, value, lo, hi`` (the average as column ``Avg``); 4 dp."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["row", "kind", "column", "value", "lo", "hi"])
    for row in result.table.rows:
        entries = [(c, row.cells[c], result.cells.get((row.label, c))) for c in result.table.columns]
        entries.append((AVG, row.avg, result.avgs.get(row.label)))
        for column, value, interval in entries:
            bounds = ["", ""] if interval is None else [_num(interval.lo), _num(interval.hi)]
            writer.writerow([row.label, row.kind, column, _num(value), *bounds])
    return buf.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


def _fmt_difference(diff: Difference | None) -> str:
    if diff is None:
        return "—"
    text = f"{diff.value:+.2f}{_fmt_interval(diff.interval, signed=True)} ({100 * diff.share_a_better:.0f} %)"
    return f"**{text}**" if diff.significant else text


def comparison_markdown(comparisons: Sequence[Comparison], columns: Sequence[str]) -> str:
    """One line per comparison ``A − B``: per dataset the difference, its paired interval and the share of
    resamples where A is better; bold where the interval excludes 0."""
    first = comparisons[0]
    lines = [
        f"**{first.metric} (%) differences A − B**, metric definition `{first.metric_definition}`: paired "
        "bootstrap over images (the same resampled images for both rows), 95 % interval, (share of "
        "resamples where A is better); **bold**: the interval excludes 0",
        "",
        "| A − B | " + " | ".join([*columns, AVG]) + " |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for comp in comparisons:
        cells = [_fmt_difference(comp.cells.get(c)) for c in columns]
        label = f"{_md(comp.a)} − {_md(comp.b)}"
        lines.append(f"| {label} | " + " | ".join([*cells, _fmt_difference(comp.avg)]) + " |")
    return "\n".join(lines) + "\n"


def comparison_csv(comparisons: Sequence[Comparison]) -> str:
    """Long CSV: ``a, b, column, diff, lo, hi, share_a_better, significant`` (average as ``Avg``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["a", "b", "column", "diff", "lo", "hi", "share_a_better", "significant"])
    for comp in comparisons:
        for column, diff in [*comp.cells.items(), (AVG, comp.avg)]:
            writer.writerow(
                [
                    comp.a,
                    comp.b,
                    column,
                    _num(diff.value),
                    _num(diff.interval.lo),
                    _num(diff.interval.hi),
                    f"{diff.share_a_better:.4f}",
                    str(diff.significant).lower(),
                ]
            )
    return buf.getvalue()


def class_differences_csv(diff: ClassDifferences) -> str:
    """``class, iou_a, iou_b, diff, lo, hi`` per class, sorted by difference (largest gain first)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["class", "iou_a", "iou_b", "diff", "lo", "hi"])
    order = np.argsort(-np.nan_to_num(diff.diff, nan=-np.inf), kind="stable")
    for i in order:
        values = (diff.a[i], diff.b[i], diff.diff[i], diff.lo[i], diff.hi[i])
        writer.writerow([diff.class_names[i], *(_num(float(v)) for v in values)])
    return buf.getvalue()
