"""``report.html``: one self-contained page per experiment (every image inlined as a base64 data URI, no
script, no external resource, so it opens offline and can be mailed).

Sections: the tables with 95 % bootstrap intervals (one per metric definition, also as LaTeX to copy), the
paired comparison of every row against a baseline row, the per-class IoU charts of those comparisons, and
the qualitative grid (Image | GT | every method, K images; :mod:`cliptrase.reporting.qualitative`) shown
once, with the runs that saved no predictions named.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from PIL import Image

from cliptrase.reporting.analysis import Analysis
from cliptrase.reporting.class_view import class_chart
from cliptrase.reporting.latex import to_latex
from cliptrase.reporting.qualitative import Grid, Qualitative, grid_row
from cliptrase.reporting.stats_tables import IntervalTable, no_interval_notes
from cliptrase.reporting.tables import AVG, MISSING
from cliptrase.stats.bootstrap import Interval
from cliptrase.stats.comparisons import Comparison, Difference

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.significant { font-weight: bold; background: #eef6ee; }
.interval { color: #666; font-size: 0.85em; }
figure { margin: 1em 0; }
img { max-width: 100%; }
table.grid img { max-width: 320px; display: block; }
table.grid th, table.grid td { vertical-align: middle; text-align: center; }
ul.legend { list-style: none; margin: 0; padding: 0; text-align: left; font-size: 0.8em; columns: 2; }
span.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; border: 1px solid #444;
  vertical-align: middle; }
p.note { color: #8a5300; }
"""


@dataclass(frozen=True)
class ReportInputs:
    """Everything the page shows."""

    experiment: str
    analyses: Sequence[Analysis]
    qualitative: Qualitative
    overlay: bool
    n_resamples: int
    seed: int


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...``: the image travels inside the page."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data: bytes, mime: str, alt: str) -> str:
    return f'<img src="{data_uri(data, mime)}" alt="{html.escape(alt)}">'


def _interval(interval: Interval | None, signed: bool = False) -> str:
    if interval is None:
        return ""
    spec = "+.2f" if signed else ".2f"
    return f' <span class="interval">[{interval.lo:{spec}}, {interval.hi:{spec}}]</span>'


def interval_table_html(result: IntervalTable) -> str:
    """The measured rows of a table, each cell ``value [lo, hi]``."""
    table = result.table
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [*table.columns, AVG])
    body = []
    for row in (r for r in table.rows if r.kind == "measured"):
        cells = [
            (MISSING if row.cells[c] is None else f"{row.cells[c]:.2f}")
            + _interval(result.cells.get((row.label, c)))
            for c in table.columns
        ]
        cells.append(
            (MISSING if row.avg is None else f"{row.avg:.2f}") + _interval(result.avgs.get(row.label))
        )
        body.append(
            f"<tr><td>{html.escape(row.label)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    caption = (
        f"{html.escape(table.metric)} (%), metric definition <code>{html.escape(table.metric_definition)}"
        "</code>, 95 % bootstrap interval over images"
    )
    return (
        f'<table class="intervals"><caption>{caption}</caption><tr><th>Row</th>{head}</tr>'
        + "".join(body)
        + "</table>"
    )


def _difference_cell(diff: Difference | None) -> str:
    if diff is None:
        return f"<td>{MISSING}</td>"
    css = ' class="significant"' if diff.significant else ""
    share = f" ({100 * diff.share_a_better:.0f} %)"
    return f"<td{css}>{diff.value:+.2f}{_interval(diff.interval, signed=True)}{share}</td>"


def comparison_table_html(comparisons: Sequence[Comparison], columns: Sequence[str]) -> str:
    """Rows ``A − B``: difference, paired interval and share of resamples where A is better."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [*columns, AVG])
    body = [
        f"<tr><td>{html.escape(comp.a)} − {html.escape(comp.b)}</td>"
        + "".join(_difference_cell(comp.cells.get(c)) for c in columns)
        + _difference_cell(comp.avg)
        + "</tr>"
        for comp in comparisons
    ]
    caption = (
        "Paired bootstrap A − B (same resampled images), 95 % interval, (share of resamples where A is "
        "better); bold: the interval excludes 0"
    )
    return (
        f'<table class="comparisons"><caption>{caption}</caption><tr><th>A − B</th>{head}</tr>'
        + "".join(body)
        + "</table>"
    )


def class_charts_html(comparisons: Sequence[Comparison]) -> str:
    """One inline PNG chart per comparison and dataset."""
    figures = []
    for comp in comparisons:
        for column, diff in comp.per_class.items():
            title = f"{column}: per-class IoU, {comp.a} vs {comp.b}"
            png = class_chart(diff, comp.a, comp.b, title, formats=("png",))["png"]
            figures.append(
                f'<figure class="class-chart">{_img(png, "image/png", title)}'
                f"<figcaption>{html.escape(title)}</figcaption></figure>"
            )
    return "".join(figures)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _hex(colour: np.ndarray) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in colour)


def _legend_html(grid: Grid, classes: Sequence[int]) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{_hex(grid.colours[c])}"></span>'
        f"{html.escape(grid.class_names[c])}</li>"
        for c in classes
    )
    return f'<ul class="legend">{items}</ul>'


def grid_html(grid: Grid, *, overlay: bool = False) -> str:
    """One dataset's grid as a table: a row per image, columns Image | GT | methods | classes."""
    head = "".join(f"<th>{html.escape(m)}</th>" for m in ("Image", "GT", *grid.methods, "Classes"))
    rows = []
    for i, stem in enumerate(grid.stems):
        drawn = grid_row(grid, i, overlay=overlay)
        tds = [f"<td>{_img(grid.images[i].read_bytes(), 'image/jpeg', f'{stem} image')}</td>"]
        cells = [("GT", drawn.gt), *zip(grid.methods, drawn.cells)]
        tds += [
            "<td>not saved</td>" if im is None else f"<td>{_img(_png(im), 'image/png', f'{stem} {n}')}</td>"
            for n, im in cells
        ]
        tds.append(f"<td>{_legend_html(grid, drawn.legend)}</td>")
        spread = grid.spreads[i] if grid.spreads else None
        if spread is not None:
            label = f'{html.escape(stem)}<br><span class="interval">spread {spread:.1f}</span>'
        else:
            label = html.escape(stem)
        rows.append(f"<tr><td>{label}</td>{''.join(tds)}</tr>")
    chosen = (
        "the images where the methods' per-image mIoU differs most (spread: max − min, %)"
        if any(s is not None for s in grid.spreads)
        else "the first saved images"
    )
    return (
        f'<h3>{html.escape(grid.dataset)}</h3><table class="grid"><tr><th></th>{head}</tr>'
        + "".join(rows)
        + f"</table><p>Rows: {chosen}, unless named with <code>--images</code>. White: ignored pixels.</p>"
    )


def qualitative_html(qualitative: Qualitative, *, overlay: bool = False) -> str:
    """The grid of every dataset (shown once; the same figure is saved as qualitative.png / .pdf), and the
    runs that saved no predictions or saved them in the old format."""
    parts = [grid_html(grid, overlay=overlay) for grid in qualitative.grids]
    if not qualitative.grids:
        parts.append('<p class="note">No run of this experiment saved predictions.</p>')
    if qualitative.without_predictions:
        runs = ", ".join(html.escape(r) for r in qualitative.without_predictions)
        parts.append(
            f'<p class="note">No predictions saved by: {runs}. Re-run them with '
            "<code>save_predictions=K</code> to include them.</p>"
        )
    if qualitative.old_format:
        runs = ", ".join(html.escape(r) for r in qualitative.old_format)
        parts.append(
            f'<p class="note">Predictions without the grid\'s image and GT (saved by an older version): '
            f"{runs}. Delete their predictions folder and re-run them with "
            "<code>save_predictions=K</code>.</p>"
        )
    return "".join(parts)


def latex_html(analyses: Sequence[Analysis]) -> str:
    """Each table with its intervals as LaTeX (``cliptrase-table --format latex --ci``), ready to copy."""
    blocks = [
        f'<pre class="latex">{html.escape(to_latex(a.intervals.table, intervals=a.intervals))}</pre>'
        for a in analyses
    ]
    return (
        "<h3>LaTeX</h3><p>The same tables as booktabs fragments (\\usepackage{booktabs}; bold: best, "
        "underlined: second best per column; &plusmn; half the interval's width):</p>" + "".join(blocks)
    )


def render_report(inputs: ReportInputs) -> str:
    """The whole page."""
    title = f"cliptrase report: {inputs.experiment}"
    sections = [f"<h1>{html.escape(title)}</h1>"]
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sections.append(
        f"<p>Generated {when}; intervals: percentile bootstrap over images, {inputs.n_resamples} "
        f"resamples, seed {inputs.seed}, computed exactly as each metric (docs/records.md).</p>"
    )
    sections.append("<h2>Tables</h2>")
    for analysis in inputs.analyses:
        sections.append(interval_table_html(analysis.intervals))
        for note in no_interval_notes(analysis.intervals.bootstrap):
            sections.append(f'<p class="note">{html.escape(note)}</p>')
    sections.append(latex_html(inputs.analyses))
    comparisons = [a for a in inputs.analyses if a.comparisons]
    if comparisons:
        sections.append("<h2>Comparisons</h2>")
        for analysis in comparisons:
            sections.append(comparison_table_html(analysis.comparisons, analysis.intervals.table.columns))
        sections.append("<h2>Per-class IoU</h2>")
        for analysis in comparisons:
            sections.append(class_charts_html(analysis.comparisons))
    sections.append("<h2>Qualitative results</h2>")
    sections.append(qualitative_html(inputs.qualitative, overlay=inputs.overlay))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
