"""Result records -> the papers' tables: datasets as columns, methods/backbones/ablations as rows, an average.

Tables are derived from :class:`~cliptrase.records.results.ResultRecord` files only, never typed by hand
or parsed from logs (docs/style.md §3.9). A table holds one metric of one metric definition: numbers of
``mmseg_iou`` and ``paper_scores`` are not comparable (docs/style.md §3.5), so records of several definitions
give several tables (:func:`build_tables`) or an error (:func:`build_table`). Published numbers, when given,
get their own clearly labelled rows next to the measured ones and are never mixed into them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cliptrase.records.failures import FailedRecord
from cliptrase.records.results import ResultRecord, atomic_write_bytes

logger = logging.getLogger(__name__)

_SPEC_FACTS = ("STANDARD_BENCHMARKS", "DATASET_ORDER")
"""Column facts read from the dataset specs (``column``, ``standard`` in :mod:`cliptrase.datasets.spec`):

* ``STANDARD_BENCHMARKS`` — the field's 8 standard-protocol benchmarks, in the order its tables list them
  (docs/protocols.md §7);
* ``DATASET_ORDER`` — column order of the field's tables (with-background benchmarks first, then without);
  unknown datasets follow alphabetically.

Both are computed on access (module ``__getattr__``): the specs live next to the dataset classes, whose
import (mmseg) a table module that is only imported should not pay."""


def _spec_facts() -> dict[str, tuple[str, ...]]:
    from cliptrase.datasets.spec import standard_benchmarks, table_order  # imports the dataset modules

    return {"STANDARD_BENCHMARKS": standard_benchmarks(), "DATASET_ORDER": table_order()}


def column_order() -> tuple[str, ...]:
    """``DATASET_ORDER``: the datasets with a table column, in column order (from the dataset specs)."""
    return _spec_facts()["DATASET_ORDER"]


def __getattr__(name: str) -> tuple[str, ...]:
    if name in _SPEC_FACTS:
        return _spec_facts()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


AVG = "Avg"
MISSING = "—"
PUBLISHED_SUFFIX = " (published)"
DELTA_SUFFIX = " Δ vs published"
INCOMPLETE_MARK = "*"
FAILED = "failed"
"""Cell text of a sweep cell whose job failed (its ``failed.json``; re-running the sweep retries it)."""
INVALID_LABELS_MARK = "†"
"""Suffix of a value scored with invalid label values left out (``allow_invalid_labels=true``)."""
INVALID_LABELS_KEY = "invalid_label_pixels"
"""Provenance key of a record counting the label pixels outside the dataset's classes."""

RowKind = Literal["measured", "published", "delta"]

_PALETTE = (  # matplotlib's tab10, so both chart back-ends colour rows alike
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


@dataclass(frozen=True)
class TableRow:
    """One row: a value per column (None where there is no result) and their mean.

    ``complete`` is False when a column is missing; the average then covers fewer datasets than the header
    suggests and renderers mark it. ``failed`` names the columns whose job failed (no value);
    ``invalid_labels`` those scored without some label pixels (``allow_invalid_labels=true``).
    """

    label: str
    cells: dict[str, float | None]
    avg: float | None
    complete: bool
    kind: RowKind = "measured"
    failed: frozenset[str] = frozenset()
    invalid_labels: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Table:
    """One metric of one metric definition over datasets (columns) and settings (rows)."""

    metric: str
    metric_definition: str
    columns: tuple[str, ...]
    rows: tuple[TableRow, ...]


def _column_key(name: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(name), "") if name in order else (len(order), name)


def _make_row(
    label: str, columns: Sequence[str], cells: Mapping[str, float | None], kind: RowKind
) -> TableRow:
    full = {c: cells.get(c) for c in columns}
    present = [v for v in full.values() if v is not None]
    avg = math.fsum(present) / len(present) if present else None
    return TableRow(label, full, avg, complete=len(present) == len(columns), kind=kind)


def _dedupe(records: Iterable[ResultRecord]) -> list[ResultRecord]:
    """One record per (row, column): the newest by provenance date, with a warning naming both runs."""
    kept: dict[tuple[str, str], ResultRecord] = {}
    for rec in records:
        key = (rec.row, rec.column)
        old = kept.get(key)
        if old is None:
            kept[key] = rec
            continue
        newer, older = (rec, old) if _date(rec) >= _date(old) else (old, rec)
        logger.warning(
            "row %r, dataset %r has results from runs %r and %r; keeping the newer (%r). Delete the other "
            "run folder to silence this",
            rec.row,
            rec.column,
            older.run,
            newer.run,
            newer.run,
        )
        kept[key] = newer
    return list(kept.values())


def _date(rec: ResultRecord) -> str:
    return str(rec.provenance.get("date") or "")


def _value(rec: ResultRecord, metric: str) -> float | None:
    value = rec.metrics.get(metric)
    if value is None:
        logger.warning("run %r has no metric %r; its cell stays empty", rec.run, metric)
        return None
    return None if math.isnan(value) else float(value)


def _check_inputs(records: Sequence[ResultRecord], metric: str) -> None:
    if not records:
        raise ValueError("no complete result records; run `cliptrase-eval experiment=...` to produce them")
    if not any(metric in r.metrics for r in records):
        available = sorted({k for r in records for k in r.metrics})
        raise ValueError(f"no record has metric {metric!r}; choose one of: {', '.join(available)}")


def build_table(
    records: Iterable[ResultRecord],
    metric: str = "mIoU",
    *,
    published: Mapping[str, Mapping[str, float]] | None = None,
    metric_definition: str | None = None,
    failures: Sequence[FailedRecord] = (),
) -> Table:
    """Lay out ``records`` as rows (``record.row``) by columns (``record.column``) of ``metric``.

    Rows keep their first-seen order after sorting records by run, so a sweep's order survives; columns
    follow :data:`DATASET_ORDER`. Each row gets an ``Avg`` over its available cells.

    Args:
        records: complete result records (see ``load_records``).
        metric: key of ``record.metrics`` to tabulate.
        published: optional numbers from a paper, ``{row label: {dataset: value}}``; the label names the
            preset, so only a run of the same preset matches, and a row carrying a ``metric_definition``
            other than the table's is skipped. Each measured row with a published counterpart is followed
            by a ``"<row> (published)"`` row and a ``"<row> Δ vs published"`` row (measured - published);
            datasets outside the table are ignored.
        metric_definition: keep only records of this definition; required when records mix definitions.
        failures: failed sweep cells (``load_failures``); a cell with no complete record reads ``failed``.

    Raises:
        ValueError: no records, unknown metric, or mixed metric definitions without ``metric_definition``.
    """
    records = sorted(records, key=lambda r: r.run)
    definitions = sorted({r.metric_definition for r in records})
    if metric_definition is not None:
        records = [r for r in records if r.metric_definition == metric_definition]
        failures = [f for f in failures if f.metric_definition == metric_definition]
        if not records and not failures and definitions:
            raise ValueError(
                f"no records with metric definition {metric_definition!r}; found: {', '.join(definitions)}"
            )
    elif len(definitions) > 1:
        raise ValueError(
            f"records mix metric definitions ({', '.join(definitions)}) whose numbers are not comparable; "
            "use build_tables() for one table per definition or pass metric_definition=..."
        )
    if records or not failures:
        _check_inputs(records, metric)
    records = _dedupe(records)
    definition = records[0].metric_definition if records else failures[0].metric_definition
    grid: dict[str, dict[str, float | None]] = {}
    for rec in records:
        grid.setdefault(rec.row, {})[rec.column] = _value(rec, metric)
    failed = {(f.row, f.column) for f in failures if f.column not in grid.get(f.row, {})}
    for label, _ in sorted(failed):
        grid.setdefault(label, {})
    invalid = {(r.row, r.column) for r in records if r.provenance.get(INVALID_LABELS_KEY)}
    order = column_order()
    columns = tuple(
        sorted({r.column for r in records} | {c for _, c in failed}, key=lambda c: _column_key(c, order))
    )
    rows: list[TableRow] = []
    for label, cells in grid.items():
        measured = dataclasses.replace(
            _make_row(label, columns, cells, "measured"),
            failed=frozenset(c for r, c in failed if r == label),
            invalid_labels=frozenset(c for r, c in invalid if r == label),
        )
        rows.append(measured)
        if published is not None and _comparable(published.get(label), definition):
            rows.extend(_published_rows(measured, columns, published[label]))
    if published is not None:
        unmatched = sorted(set(published) - grid.keys())
        if unmatched:
            logger.info("published rows without measured results (not shown): %s", ", ".join(unmatched))
    return Table(metric, definition, columns, tuple(rows))


def _comparable(numbers: Mapping[str, float] | None, metric_definition: str) -> bool:
    """A published row is set beside (and subtracted from) a measured one only under the same metric.

    The preset already matches (the row label ends in the protocol); a row that states its metric
    (:class:`~cliptrase.reporting.published.PublishedRow`) must also state this table's.
    """
    if numbers is None:
        return False
    return getattr(numbers, "metric_definition", metric_definition) == metric_definition


def _published_rows(
    measured: TableRow, columns: Sequence[str], numbers: Mapping[str, float]
) -> tuple[TableRow, TableRow]:
    """The published row and the Δ row (measured - published, only where both exist)."""
    pub = {c: float(numbers[c]) for c in columns if numbers.get(c) is not None}
    delta = {
        c: measured.cells[c] - pub[c]  # type: ignore[operator]
        for c in columns
        if c in pub and measured.cells[c] is not None
    }
    return (
        _make_row(measured.label + PUBLISHED_SUFFIX, columns, pub, "published"),
        _make_row(measured.label + DELTA_SUFFIX, columns, delta, "delta"),
    )


def build_tables(
    records: Iterable[ResultRecord],
    metric: str = "mIoU",
    *,
    published: Mapping[str, Mapping[str, float]] | None = None,
    failures: Sequence[FailedRecord] = (),
) -> list[Table]:
    """One :func:`build_table` per metric definition present (in records or failures), sorted by name."""
    records = list(records)
    if records or not failures:
        _check_inputs(records, metric)
    definitions = sorted({r.metric_definition for r in records} | {f.metric_definition for f in failures})
    return [
        build_table(records, metric, published=published, metric_definition=d, failures=failures)
        for d in definitions
    ]


# ------------------------------------------------------------------------------------------------ renderers


def _fmt(value: float | None, kind: RowKind) -> str:
    if value is None:
        return MISSING
    return f"{value:+.2f}" if kind == "delta" else f"{value:.2f}"


def _md_escape(text: str) -> str:
    """Row labels such as ``"cliptrase | ViT-B-16/openai"`` contain pipes, which would split the cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|")


def to_markdown(table: Table) -> str:
    """GitHub Markdown: a caption naming metric and definition, 2-dp numbers, ``—`` for missing cells.

    An average over fewer datasets than the header is marked ``*`` and explained below the table.
    """
    lines = [
        f"**{table.metric} (%)**, metric definition `{table.metric_definition}`",
        "",
        "| Row | " + " | ".join([*table.columns, AVG]) + " |",
        "|---|" + "---:|" * (len(table.columns) + 1),
    ]
    for row in table.rows:
        cells = [_cell(row, c) for c in table.columns]
        avg = _fmt(row.avg, row.kind) + ("" if row.complete or row.avg is None else INCOMPLETE_MARK)
        lines.append(f"| {_md_escape(row.label)} | " + " | ".join([*cells, avg]) + " |")
    if any(not r.complete and r.avg is not None for r in table.rows):
        # Escaped: a line starting with "* " would render as a bullet.
        lines += ["", f"\\{INCOMPLETE_MARK} average over the available datasets only (row incomplete)."]
    lines += _notes(table)
    return "\n".join(lines) + "\n"


def _cell(row: TableRow, column: str) -> str:
    if column in row.failed:
        return FAILED
    return _fmt(row.cells[column], row.kind) + (INVALID_LABELS_MARK if column in row.invalid_labels else "")


def _notes(table: Table) -> list[str]:
    """Footnotes for failed cells and cells scored without invalid label pixels."""
    notes = []
    if any(r.failed for r in table.rows):
        notes.append(
            f"{FAILED}: the job failed (its error is in the run folder's failed.json); re-run the sweep to "
            "retry only those cells."
        )
    if any(r.invalid_labels for r in table.rows):
        notes.append(
            f"{INVALID_LABELS_MARK} scored with allow_invalid_labels=true: label values outside the "
            f"dataset's classes were left out ({INVALID_LABELS_KEY} in the record); "
            "run `cliptrase data check`."
        )
    return ["", *notes] if notes else []


def to_csv(table: Table) -> str:
    """CSV with columns ``row, kind, <datasets...>, Avg, complete``; 4 dp, empty cells for missing values,
    ``failed`` for failed cells."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["row", "kind", *table.columns, AVG, "complete"])
    for row in table.rows:
        cells = [FAILED if c in row.failed else _csv_value(row.cells[c]) for c in table.columns]
        writer.writerow([row.label, row.kind, *cells, _csv_value(row.avg), str(row.complete).lower()])
    return buf.getvalue()


def _csv_value(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _chart_data(table: Table) -> tuple[list[str], list[TableRow]]:
    """Groups (datasets, plus Avg when there are several) and the measured rows that become bar series."""
    groups = [*table.columns, AVG] if len(table.columns) > 1 else list(table.columns)
    return groups, [r for r in table.rows if r.kind == "measured"]


def _bar_value(row: TableRow, group: str) -> float | None:
    return row.avg if group == AVG else row.cells[group]


def to_bar_chart(table: Table, path: Path) -> Path:
    """Write a grouped bar chart PNG (a group per dataset, a colour per measured row, a legend) to ``path``.

    Uses matplotlib when installed, else draws with PIL, so charts never add a dependency. Published and Δ
    rows are left out: the chart shows what was measured.
    """
    modules = _load_matplotlib()
    png = _render_matplotlib(table, *modules) if modules else _render_pil(table)
    path = Path(path)
    atomic_write_bytes(path, png)
    return path


def _load_matplotlib() -> tuple[Any, Any] | None:
    """(Figure, FigureCanvasAgg), or None when matplotlib is not installed.

    The object API with an explicit Agg canvas renders headless without ``matplotlib.use``, which would
    switch the backend of a user's interactive session.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure, FigureCanvasAgg


def _render_matplotlib(table: Table, figure_cls: Any, canvas_cls: Any) -> bytes:
    groups, rows = _chart_data(table)
    fig = figure_cls(figsize=(max(6.0, 1.0 + len(groups) * (0.3 + 0.25 * len(rows))), 4.5))
    canvas_cls(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        xs = [g + (i - (len(rows) - 1) / 2) * width for g, _ in enumerate(groups)]
        values = [_bar_value(row, group) for group in groups]
        pairs = [(x, v) for x, v in zip(xs, values) if v is not None]
        ax.bar(
            [x for x, _ in pairs],
            [v for _, v in pairs],
            width,
            label=row.label,
            color=_PALETTE[i % len(_PALETTE)],
        )
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylabel(f"{table.metric} (%)")
    ax.set_title(f"{table.metric}, metric definition {table.metric_definition}")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=min(3, max(1, len(rows))), fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return buf.getvalue()


def _render_pil(table: Table) -> bytes:
    """A plain grouped bar chart with PIL's default font, for installs without matplotlib."""
    from PIL import Image, ImageDraw, ImageFont

    groups, rows = _chart_data(table)
    font = ImageFont.load_default()
    bar_w, gap, left, top, plot_h = 14, 24, 50, 30, 260
    group_w = bar_w * max(1, len(rows)) + gap
    legend_w = max((font.getlength(r.label) for r in rows), default=0.0)
    width = int(max(left + group_w * len(groups) + 20, left + 16 + legend_w + 10, 360))
    height = top + plot_h + 40 + 16 * len(rows) + 10
    values = [v for r in rows for g in groups if (v := _bar_value(r, g)) is not None]
    y_max = max(10.0, math.ceil(max(values, default=0.0) / 10) * 10)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    base = top + plot_h
    draw.text((left, 8), f"{table.metric} (%), {table.metric_definition}", fill="black", font=font)
    for k in range(6):  # y grid and labels at sixths of the range
        y = base - plot_h * k / 5
        draw.line([(left, y), (width - 10, y)], fill="#dddddd")
        draw.text((4, y - 6), f"{y_max * k / 5:.0f}", fill="black", font=font)
    for g, group in enumerate(groups):
        x0 = left + gap / 2 + g * group_w
        for i, row in enumerate(rows):
            value = _bar_value(row, group)
            if value is None:
                continue
            h = plot_h * max(0.0, value) / y_max
            draw.rectangle(
                [x0 + i * bar_w, base - h, x0 + (i + 1) * bar_w - 2, base], fill=_PALETTE[i % len(_PALETTE)]
            )
        draw.text((x0, base + 4), group, fill="black", font=font)
    draw.line([(left, top), (left, base), (width - 10, base)], fill="black")
    for i, row in enumerate(rows):  # legend
        y = base + 24 + 16 * i
        draw.rectangle([left, y, left + 10, y + 10], fill=_PALETTE[i % len(_PALETTE)])
        draw.text((left + 16, y - 1), row.label, fill="black", font=font)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
