"""Statistics of an experiment's tables (``cliptrase-table --ci/--compare/--baseline``, ``cliptrase-report``):
which rows to compare, and the files that hold intervals, differences and per-class views.

Files written beside the tables (``<stem>`` is the table's own stem, e.g. ``table`` or
``table_paper_scores``):

- ``<stem>_ci.{md,csv}``: every cell and average with its 95 % bootstrap interval (and ``<stem>_ci.tex``, the
  same as LaTeX, with ``--format latex``);
- ``compare/<A>__vs__<B>.{md,csv}``: paired differences per dataset (``--compare A B``), or
  ``compare/baseline__<B>.{md,csv}`` for every row against ``--baseline B``;
- ``compare/<dataset>__<A>__vs__<B>.{png,svg,csv}``: per-class IoU of A and B, sorted by the difference.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cliptrase.errors import ConfigError
from cliptrase.records.results import ResultRecord, atomic_write_text, load_records
from cliptrase.reporting.class_view import write_class_chart
from cliptrase.reporting.latex import INTERVAL_STYLES, IntervalStyle, to_latex
from cliptrase.reporting.stats_tables import (
    IntervalTable,
    class_differences_csv,
    comparison_csv,
    comparison_markdown,
    interval_csv,
    interval_markdown,
    interval_table,
)
from cliptrase.reporting.tables import Table, build_tables
from cliptrase.stats.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED
from cliptrase.stats.comparisons import (
    Bootstrap,
    Comparison,
    bootstrap_records,
    compare_rows,
    resolve_row,
    shared_columns,
)

logger = logging.getLogger(__name__)

COMPARE_DIR = "compare"


@dataclass(frozen=True)
class StatsRequest:
    """What to compute: intervals, one pair (``compare``) or every row against ``baseline``."""

    ci: bool = False
    compare: tuple[str, str] | None = None
    baseline: str | None = None
    n_resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    latex: bool = False
    """Also write the interval table as LaTeX (``<stem>_ci.tex``)."""
    interval_style: IntervalStyle = "pm"
    """How the LaTeX table shows an interval: ``pm`` (± half its width) or ``range`` (``[lo, hi]``)."""

    def __post_init__(self) -> None:
        if self.n_resamples < 1:
            raise ValueError(f"--resamples must be at least 1, got {self.n_resamples}")
        if self.interval_style not in INTERVAL_STYLES:
            raise ValueError(
                f"--ci-style must be one of {', '.join(INTERVAL_STYLES)}, got {self.interval_style!r}"
            )
        if self.compare is not None and self.baseline is not None:
            raise ValueError("give either --compare A B or --baseline ROW, not both")

    @property
    def any(self) -> bool:
        """Whether anything beyond the plain table was asked for."""
        return self.ci or self.compare is not None or self.baseline is not None


@dataclass(frozen=True)
class Analysis:
    """The statistics of one table (one metric definition)."""

    intervals: IntervalTable
    comparisons: tuple[Comparison, ...]


def slug(label: str) -> str:
    """A file-name-safe form of a row label (``cliptrase | ViT-B-16 | paper224`` ->
    ``cliptrase_ViT-B-16_paper224``)."""
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", label).strip("_") or "row"


def _measured_rows(table: Table) -> list[str]:
    return [r.label for r in table.rows if r.kind == "measured"]


def pairs_for(table: Table, request: StatsRequest) -> list[tuple[str, str]]:
    """The (A, B) rows of ``table`` to compare; empty when the request names rows of another table.

    Raises:
        ValueError: a row name matches nothing or several rows of this table's experiment.
    """
    rows = _measured_rows(table)
    if request.compare is not None:
        a, b = (_resolve_or_none(x, rows) for x in request.compare)
        if a is None and b is None:
            return []
        if a is None or b is None:
            missing = request.compare[0] if a is None else request.compare[1]
            raise ValueError(
                f"row {missing!r} is not in the `{table.metric_definition}` table of the other row; rows of "
                f"different metric definitions are not comparable. Rows there: {'; '.join(rows)}"
            )
        return [(a, b)]
    if request.baseline is not None:
        base = _resolve_or_none(request.baseline, rows)
        return [] if base is None else [(r, base) for r in rows if r != base]
    return []


def _resolve_or_none(label: str, rows: Sequence[str]) -> str | None:
    """``resolve_row``, except that a label matching no row is None (it may belong to another table)."""
    try:
        return resolve_row(label, rows)
    except ValueError as err:
        if "ambiguous" in str(err):
            raise
        return None


def analyse(
    table: Table,
    records: Sequence[ResultRecord],
    experiment_dir: Path,
    request: StatsRequest,
    pairs: Sequence[tuple[str, str]],
) -> Analysis:
    """Bootstrap the records of ``table``'s metric definition; intervals and the requested comparisons."""
    own = [r for r in records if r.metric_definition == table.metric_definition]
    boot: Bootstrap = bootstrap_records(
        own, experiment_dir, table.metric, n_resamples=request.n_resamples, seed=request.seed
    )
    comparisons = []
    for a, b in pairs:
        if request.baseline is not None and not shared_columns(boot, a, b):
            logger.info("%s is not compared with %s: no dataset where both have per-image records", a, b)
            continue
        comparisons.append(compare_rows(boot, own, a, b))
    return Analysis(interval_table(table, boot), tuple(comparisons))


def write_analysis(analysis: Analysis, out_dir: Path, stem: str, request: StatsRequest) -> list[Path]:
    """Write the files of the module docstring for one table; log the Markdown; return the paths."""
    written: list[Path] = []
    if request.ci:
        markdown = interval_markdown(analysis.intervals)
        written += _write_pair(out_dir / f"{stem}_ci", markdown, interval_csv(analysis.intervals))
        if request.latex:
            tex = to_latex(
                analysis.intervals.table, intervals=analysis.intervals, interval_style=request.interval_style
            )
            atomic_write_text(out_dir / f"{stem}_ci.tex", tex)
            written.append(out_dir / f"{stem}_ci.tex")
        logger.info("intervals -> %s_ci.{md,csv%s}\n%s", out_dir / stem, ",tex" * request.latex, markdown)
    if analysis.comparisons:
        written += write_comparisons(analysis.comparisons, analysis.intervals.table, out_dir, request)
    return written


def comparison_stem(comparisons: Sequence[Comparison], request: StatsRequest) -> str:
    """``<A>__vs__<B>`` for ``--compare``, ``baseline__<B>`` for ``--baseline``."""
    first = comparisons[0]
    return f"baseline__{slug(first.b)}" if request.baseline else f"{slug(first.a)}__vs__{slug(first.b)}"


def write_comparisons(
    comparisons: Sequence[Comparison], table: Table, out_dir: Path, request: StatsRequest
) -> list[Path]:
    """The difference table and, per comparison and dataset, the per-class chart and CSV."""
    folder = out_dir / COMPARE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    markdown = comparison_markdown(comparisons, table.columns)
    stem = folder / comparison_stem(comparisons, request)
    written = _write_pair(stem, markdown, comparison_csv(comparisons))
    logger.info("paired comparisons -> %s.{md,csv}\n%s", stem, markdown)
    for comp in comparisons:
        for column, diff in comp.per_class.items():
            class_stem = folder / f"{column}__{slug(comp.a)}__vs__{slug(comp.b)}"
            title = f"{column}: per-class IoU, {comp.a} vs {comp.b}"
            write_class_chart(diff, comp.a, comp.b, title, class_stem)
            atomic_write_text(class_stem.parent / f"{class_stem.name}.csv", class_differences_csv(diff))
            written += [class_stem.parent / f"{class_stem.name}.{ext}" for ext in ("png", "svg", "csv")]
    return written


def _write_pair(stem: Path, markdown: str, csv_text: str) -> list[Path]:
    md, csv = stem.parent / f"{stem.name}.md", stem.parent / f"{stem.name}.csv"
    atomic_write_text(md, markdown)
    atomic_write_text(csv, csv_text)
    return [md, csv]


def table_stem(table: Table, n_tables: int) -> str:
    """The stem the experiment's table writer gives ``table``: ``table``, or ``table_<definition>`` when
    several metric definitions give several tables."""
    return "table" if n_tables == 1 else f"table_{table.metric_definition}"


def _check_rows_exist(tables: Sequence[Table], request: StatsRequest) -> None:
    """Every row ``--compare``/``--baseline`` names is a row of some table (the error lists the rows).

    Raises:
        ConfigError: a name that matches no row of any table.
    """
    rows = [r for table in tables for r in _measured_rows(table)]
    for name in request.compare or ((request.baseline,) if request.baseline else ()):
        if all(_resolve_or_none(name, _measured_rows(table)) is None for table in tables):
            option = "--baseline" if request.baseline else "--compare"
            raise ConfigError(
                f"{option}: no row {name!r} (a full row label or one of its | fields); rows are: "
                f"{'; '.join(rows)}"
            )


def write_statistics(
    experiment_dir: Path, *, metric: str, out_dir: Path, request: StatsRequest
) -> list[Analysis]:
    """Analyse and write the statistics of every table of an experiment (``cliptrase-table`` options).

    Raises:
        ValueError: no records; the compared rows are in no table, in different tables (metric
            definitions), on different images, or unknown.
    """
    records = load_records(experiment_dir)
    if not records:
        raise ValueError(f"no complete results under {experiment_dir}")
    tables = build_tables(records, metric)
    _check_rows_exist(tables, request)
    plans = [(table, table_stem(table, len(tables)), pairs_for(table, request)) for table in tables]
    if (request.compare or request.baseline) and not any(pairs for _, _, pairs in plans):
        names = request.compare or (request.baseline,)
        rows = "; ".join(r for table in tables for r in _measured_rows(table))
        raise ValueError(
            f"nothing to compare: no table has the row(s) {', '.join(map(repr, names))} next to another "
            f"row; rows are: {rows}"
        )
    analyses = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for table, stem, pairs in plans:
        if not request.ci and not pairs:
            continue
        analysis = analyse(table, records, experiment_dir, request, pairs)
        write_analysis(analysis, out_dir, stem, request)
        analyses.append(analysis)
    return analyses
