"""A table as LaTeX (booktabs) to ``\\input`` into a paper: ``cliptrase-table --format latex``, the report.

The output is a *fragment*: one ``tabular`` (``\\toprule``/``\\midrule``/``\\bottomrule`` of the ``booktabs``
package) preceded by comment lines naming the metric, its definition and the marks, so the paper keeps its
own ``table`` float, caption and label::

    \\usepackage{booktabs}          % preamble
    \\begin{table}\\centering \\input{table.tex} \\caption{...}\\end{table}

Per column (each dataset and the average) the best measured value is bold and the second best underlined,
compared at the two decimals shown (equal values share the mark, so a tie is bold twice). Published rows
(``(published)``) and Δ rows (measured − published, signed) are set in italics and never marked. Missing
cells are ``--``; a failed sweep cell reads ``failed``; the marks of the Markdown table (``*`` incomplete
average, ``†`` invalid labels left out) become superscripts with the same notes below the rule. With
bootstrap intervals (``--ci``) every measured cell carries its 95 % interval, as ``$\\pm$h`` (h = half the
interval's width; the percentile interval need not be symmetric) or as ``[lo, hi]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from cliptrase.reporting.stats_tables import IntervalTable
from cliptrase.reporting.tables import (
    AVG,
    FAILED,
    INVALID_LABELS_KEY,
    Table,
    TableRow,
)
from cliptrase.stats.bootstrap import Interval

IntervalStyle = Literal["pm", "range"]
INTERVAL_STYLES: tuple[IntervalStyle, ...] = ("pm", "range")
LATEX_MISSING = "--"
"""The table's missing marker (``—``) in LaTeX: an en dash."""

_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "|": r"\textbar{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "Δ": r"$\Delta$",
    "−": "--",
    "—": "---",
    "†": r"$^\dagger$",
}


def latex_escape(text: str) -> str:
    """``text`` as LaTeX text: the special characters (``\\ & % $ # _ { } ~ ^``, and ``| < >``, which the
    default font encoding would print as other glyphs) escaped; Δ, −, — and † as LaTeX."""
    return "".join(_SPECIALS.get(ch, ch) for ch in text)


def _value(row: TableRow, column: str) -> float | None:
    return row.avg if column == AVG else row.cells[column]


def ranks(table: Table) -> dict[tuple[str, str], int]:
    """``{(row label, column): 1 | 2}``: the best and second-best measured value of each column (higher is
    better), compared at the two decimals printed; a column with fewer than two values gets no mark."""
    marks: dict[tuple[str, str], int] = {}
    measured = [r for r in table.rows if r.kind == "measured"]
    for column in [*table.columns, AVG]:
        shown = {
            r.label: float(f"{v:.2f}")  # as printed
            for r in measured
            if (v := _value(r, column)) is not None and column not in r.failed
        }
        levels = sorted(set(shown.values()), reverse=True)
        if len(shown) < 2:
            continue
        for label, value in shown.items():
            if value == levels[0]:
                marks[(label, column)] = 1
            elif len(levels) > 1 and value == levels[1]:
                marks[(label, column)] = 2
    return marks


def _number(value: float, signed: bool) -> str:
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _interval_text(interval: Interval | None, style: IntervalStyle) -> str:
    if interval is None or math.isnan(interval.lo):
        return ""
    if style == "pm":
        return rf" {{\scriptsize $\pm${(interval.hi - interval.lo) / 2:.2f}}}"
    return rf" {{\scriptsize [{interval.lo:.2f}, {interval.hi:.2f}]}}"


def _cell(
    row: TableRow,
    column: str,
    rank: int | None,
    interval: Interval | None,
    style: IntervalStyle,
) -> str:
    if column in row.failed:
        return FAILED
    value = _value(row, column)
    if value is None:
        return LATEX_MISSING
    text = _number(value, signed=row.kind == "delta")
    if rank == 1:
        text = rf"\textbf{{{text}}}"
    elif rank == 2:
        text = rf"\underline{{{text}}}"
    if column in row.invalid_labels:
        text += r"$^\dagger$"
    if column == AVG and not row.complete:
        text += r"$^*$"
    text += _interval_text(interval, style)
    return rf"\textit{{{text}}}" if row.kind != "measured" else text


def _row_label(row: TableRow) -> str:
    label = latex_escape(row.label)  # a Δ row's " Δ vs published" becomes $\Delta$
    return label if row.kind == "measured" else rf"\textit{{{label}}}"


def _notes(table: Table, width: int) -> list[str]:
    notes = []
    if any(not r.complete and r.avg is not None for r in table.rows):
        notes.append(r"$^*$ average over the available datasets only (row incomplete).")
    if any(r.invalid_labels for r in table.rows):
        notes.append(
            r"$^\dagger$ scored with allow\_invalid\_labels=true: label values outside the dataset's classes "
            rf"were left out ({latex_escape(INVALID_LABELS_KEY)} in the record)."
        )
    if any(r.failed for r in table.rows):
        notes.append(f"{FAILED}: the job failed (its error is in the run folder's failed.json).")
    return [rf"\multicolumn{{{width}}}{{l}}{{\footnotesize {note}}} \\" for note in notes]


def _header_comments(table: Table, result: IntervalTable | None, style: IntervalStyle) -> list[str]:
    lines = [
        f"% {table.metric} (%), metric definition {table.metric_definition}; generated by cliptrase-table "
        "from the result records (do not edit by hand).",
        "% Needs \\usepackage{booktabs}. Bold: best measured value per column; underlined: second best.",
        "% Italic: published rows and Delta rows (measured - published).",
    ]
    if result is not None:
        boot = result.bootstrap
        what = "+- half the width of" if style == "pm" else "[lo, hi]:"
        lines.append(
            f"% Intervals: {what} the 95 % percentile bootstrap interval over images ({boot.n_resamples} "
            f"resamples, seed {boot.seed})."
        )
    return lines


def to_latex(
    table: Table,
    *,
    intervals: IntervalTable | None = None,
    interval_style: IntervalStyle = "pm",
) -> str:
    """The booktabs ``tabular`` fragment of ``table`` (see the module docstring), with the bootstrap
    interval of every measured cell when ``intervals`` (of the same table) is given."""
    if interval_style not in INTERVAL_STYLES:
        raise ValueError(
            f"interval style must be one of {', '.join(INTERVAL_STYLES)}, got {interval_style!r}"
        )
    columns: Sequence[str] = [*table.columns, AVG]
    marks = ranks(table)
    lines = _header_comments(table, intervals, interval_style)
    lines += [
        r"\begin{tabular}{l" + "r" * len(columns) + "}",
        r"\toprule",
        " & ".join(["Row", *(latex_escape(c) for c in columns)]) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        cells = []
        for column in columns:
            interval = None
            if intervals is not None and row.kind == "measured":
                key = (row.label, column)
                interval = intervals.avgs.get(row.label) if column == AVG else intervals.cells.get(key)
            cells.append(_cell(row, column, marks.get((row.label, column)), interval, interval_style))
        lines.append(" & ".join([_row_label(row), *cells]) + r" \\")
    lines.append(r"\bottomrule")
    lines += _notes(table, len(columns) + 1)
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"
