"""The one writer of an experiment's tables: ``table.{md,csv,png}`` (and ``table.tex`` once asked for) from
its complete result records.

``cliptrase-table``, the end of a ``cliptrase-eval`` run and ``cliptrase reproduce`` all write through
:func:`write_tables`. Records of different metric definitions are never mixed: each gets its own
``table_<definition>.{md,csv,png}``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Literal

from cliptrase.errors import DataError
from cliptrase.records.failures import load_failures
from cliptrase.records.results import atomic_write_text, load_records
from cliptrase.reporting.latex import to_latex
from cliptrase.reporting.published import PUBLISHED_MODEL, published_for_rows
from cliptrase.reporting.tables import Table, build_tables, to_bar_chart, to_csv, to_markdown
from cliptrase.stats.bootstrap import SCORERS
from cliptrase.utils.locks import held, tables_lock

logger = logging.getLogger(__name__)

BUILTIN: Literal["builtin"] = "builtin"
"""``published=BUILTIN``: the built-in published numbers (docs/method.md §9.1, docs/protocols.md §4) of the
rows that have them; they are mIoU, so other metrics get none."""
PUBLISHED_METRIC = "mIoU"
TABLE_EXTENSIONS = ("md", "csv", "png", "tex")
LATEX = "latex"
FORMATS = ("md", "csv", "png", LATEX)
"""``--format`` choices. ``md``, ``csv`` and ``png`` are the experiment's table and always written; ``latex``
adds ``<stem>.tex`` (:mod:`cliptrase.reporting.latex`), which is then kept up to date by every later write."""

Published = Mapping[str, Mapping[str, float]] | Literal["builtin"] | None


def write_tables(
    experiment_dir: Path,
    *,
    metric: str = PUBLISHED_METRIC,
    out_dir: Path | None = None,
    published: Published = BUILTIN,
    published_models: Collection[str] = (PUBLISHED_MODEL,),
    formats: Collection[str] = (),
) -> list[Path]:
    """Build and write the experiment's tables; returns the Markdown files written.

    Args:
        experiment_dir: ``results/<experiment>``, holding one folder per run.
        metric: summary metric to tabulate (``mIoU``, ``mAcc``, ``aAcc``...).
        out_dir: destination folder (default: ``experiment_dir``).
        published: ``{row label: {dataset: value}}`` to add published and Δ rows, :data:`BUILTIN`, or None.
        published_models: model slugs whose rows the built-in published numbers apply to.
        formats: :data:`FORMATS`; ``latex`` writes ``<stem>.tex`` too (an existing one is always rewritten).

    The experiment's table lock is held throughout (:mod:`cliptrase.utils.locks`), so jobs finishing
    together rewrite the tables one after the other, each from every record on disk; failed sweep cells
    (``failed.json``) show as ``failed``.

    Raises:
        FileNotFoundError: ``experiment_dir`` does not exist.
        ValueError: no complete or failed record there, or an unknown metric.
        OSError: the output folder cannot be created or written.
    """
    hint = f"`cliptrase-eval -m experiment={experiment_dir.name}`"
    if not experiment_dir.is_dir():
        raise FileNotFoundError(
            f"results directory {experiment_dir} does not exist; results are written there by {hint}"
        )
    with held(tables_lock(experiment_dir), f"the tables of {experiment_dir}"):
        records, failures = load_records(experiment_dir), load_failures(experiment_dir)
        if not records and not failures:
            raise DataError(f"no complete results under {experiment_dir}; produce them with {hint}")
        if published == BUILTIN:
            published = _builtin_published({r.row for r in records}, metric, published_models)
        tables = build_tables(records, metric, published=published, failures=failures)
        out = out_dir or experiment_dir
        _make_out_dir(out)
        if len(tables) > 1:
            logger.warning(
                "results use %d metric definitions, which are not comparable; writing one table each",
                len(tables),
            )
        stems = ["table" if len(tables) == 1 else f"table_{t.metric_definition}" for t in tables]
        before = {stem: _read_text(out / f"{stem}.md") for stem in stems}
        written = [_write_table(t, out, stem, latex=LATEX in formats) for t, stem in zip(tables, stems)]
        changed = [stem for stem in stems if before[stem] != _read_text(out / f"{stem}.md")]
        remove_stale_tables(out, stems, changed=changed)
        return written


def remove_stale_tables(out_dir: Path, stems: Collection[str], *, changed: Collection[str]) -> list[Path]:
    """Delete tables that no longer describe the records: ``table.*`` once a second metric definition
    splits the table, ``table_<definition>.*`` once one is left (or its definition is gone), and the
    interval table (``<stem>_ci.{md,csv,tex}``, written by ``cliptrase-table --ci``) of every table that is
    gone or whose content ``changed``."""
    candidates = {"table", *(f"table_{definition}" for definition in SCORERS), *stems}
    removed = []
    for stem in sorted(candidates):
        stale_ci = stem not in stems or stem in changed
        names = [f"{stem}_ci.{ext}" for ext in ("md", "csv", "tex")] if stale_ci else []
        if stem not in stems:
            names += [f"{stem}.{ext}" for ext in TABLE_EXTENSIONS]
        for path in (out_dir / name for name in names):
            if path.is_file():
                path.unlink()
                removed.append(path)
    if removed:
        logger.info("removed stale tables: %s", ", ".join(p.name for p in removed))
    return removed


def _read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _builtin_published(
    rows: Collection[str], metric: str, models: Collection[str]
) -> Mapping[str, Mapping[str, float]] | None:
    if metric != PUBLISHED_METRIC:
        return None
    return published_for_rows(rows, models=models) or None


def _write_table(table: Table, out_dir: Path, stem: str, *, latex: bool) -> Path:
    markdown = to_markdown(table)
    atomic_write_text(out_dir / f"{stem}.md", markdown)
    atomic_write_text(out_dir / f"{stem}.csv", to_csv(table))
    to_bar_chart(table, out_dir / f"{stem}.png")
    extensions = "md,csv,png"
    if latex or (out_dir / f"{stem}.tex").is_file():  # once asked for, kept in step with the records
        atomic_write_text(out_dir / f"{stem}.tex", to_latex(table))
        extensions += ",tex"
    logger.info("wrote %s.{%s} in %s\n%s", stem, extensions, out_dir, markdown)
    return out_dir / f"{stem}.md"


def _make_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot create output folder {out_dir} ({err.strerror}); choose another with --out"
        ) from None
