"""Bootstrap intervals on a table's cells, and intervals and paired comparisons as Markdown and CSV.

:func:`interval_table` puts a 95 % interval on every cell and average of a
:class:`~cliptrase.reporting.tables.Table` from a :class:`~cliptrase.stats.comparisons.Bootstrap`; the
renderers write those intervals and :class:`~cliptrase.stats.comparisons.Comparison` results as text.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cliptrase.reporting.tables import AVG, Table
from cliptrase.stats.bootstrap import Interval, percentile_interval
from cliptrase.stats.comparisons import Bootstrap, ClassDifferences, Comparison, Difference, Key

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
    notes += no_interval_notes(boot)
    return ["", *notes] if notes else []


def no_interval_notes(boot: Bootstrap) -> list[str]:
    """Why cells have no interval: records made before per-image files existed, and per-image files that
    exist but cannot be used (each named with its problem and how to recompute it)."""
    notes = []
    if boot.missing:
        runs = ", ".join(f"{r} / {c}" for r, c in boot.missing)
        notes.append(f"No interval (no per-image record, made before they existed): {runs}.")
    for (row, column), reason in boot.unusable:
        notes.append(f"No interval for {row} / {column}: {reason}.")
    return notes


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
