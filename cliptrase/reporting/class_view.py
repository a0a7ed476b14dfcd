"""Per-class view of a paired comparison: per-class IoU of rows A and B as a sorted bar chart (PNG + SVG).

Classes are sorted by the difference A - B, so gains and losses sit at the two ends. Large vocabularies
(ADE-150, PC-459, ADE-847) would give charts nobody can read: beyond :data:`MAX_CHART_CLASSES` classes the
chart shows the k classes with the largest absolute difference and says how many were left out; the CSV
beside it (:func:`cliptrase.reporting.stats_tables.class_differences_csv`) always lists every class.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cliptrase.records.results import atomic_write_bytes
from cliptrase.stats.comparisons import ClassDifferences

MAX_CHART_CLASSES = 60
"""Most classes drawn in one chart (k): beyond it, the k with the largest |A - B|."""

_COLOURS = ("#1f77b4", "#ff7f0e")  # tab10's first two, as the table chart's first two rows
_INCH_PER_CLASS = 0.22
_LEGEND_PAD = 38
"""Points between the axes and the title: room for the two-entry legend above the bars."""
_TITLE_WIDTH = 90
"""Characters per title line: long row labels wrap instead of widening the figure."""


@dataclass(frozen=True)
class ChartClasses:
    """Which classes a per-class chart draws.

    Attributes:
        order: indices of the drawn classes, sorted by A - B descending (largest gain on top).
        n_defined: classes with a value (present in the GT of the compared images).
        n_classes: all classes of the vocabulary.
    """

    order: np.ndarray
    n_defined: int
    n_classes: int

    @property
    def left_out(self) -> int:
        """Classes with a value that the chart does not draw (listed in the CSV)."""
        return self.n_defined - len(self.order)


def chart_classes(diff: ClassDifferences, k: int = MAX_CHART_CLASSES) -> ChartClasses:
    """The classes to draw: every class with a value, or beyond ``k`` the ``k`` with the largest |A - B|
    (ties broken by class order), sorted by A - B descending. Classes absent from the GT (NaN) are not drawn.
    """
    defined = np.flatnonzero(~np.isnan(diff.diff))
    if len(defined) > k:
        largest = np.argsort(-np.abs(diff.diff[defined]), kind="stable")[:k]
        defined = np.sort(defined[largest])
    order = defined[np.argsort(-diff.diff[defined], kind="stable")]
    return ChartClasses(order, int(np.count_nonzero(~np.isnan(diff.diff))), len(diff.class_names))


def chart_title(title: str, shown: ChartClasses) -> str:
    """The chart's title, wrapped, with what was left out."""
    lines = textwrap.wrap(title, _TITLE_WIDTH)
    if shown.left_out:
        lines.append(
            f"{len(shown.order)} of {shown.n_defined} classes with the largest |difference| shown, "
            f"{shown.left_out} left out (all in the CSV)"
        )
    if shown.n_defined < shown.n_classes:
        lines.append(f"{shown.n_classes - shown.n_defined} of {shown.n_classes} classes absent from the GT")
    return "\n".join(lines)


def class_chart(
    diff: ClassDifferences, label_a: str, label_b: str, title: str, formats: tuple[str, ...] = ("png", "svg")
) -> dict[str, bytes]:
    """The chart as ``{"png": bytes, "svg": bytes}`` (``formats``: the report needs only the PNG; each
    format costs a full render) via matplotlib's object API on an Agg canvas, which renders headless
    without switching the backend of a user's session."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = chart_classes(diff)
    order = shown.order
    fig = Figure(figsize=(8.0, 2.0 + _INCH_PER_CLASS * max(1, len(order))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ys = np.arange(len(order))
    height = 0.4
    ax.barh(ys - height / 2, np.nan_to_num(diff.a[order]), height, label=label_a, color=_COLOURS[0])
    ax.barh(ys + height / 2, np.nan_to_num(diff.b[order]), height, label=label_b, color=_COLOURS[1])
    ax.set_yticks(ys, [f"{diff.class_names[i]} ({diff.diff[i]:+.1f})" for i in order], fontsize=7)
    ax.set_ylim(len(order) - 0.5, -0.5)  # largest gain on top, no empty margin
    ax.set_xlabel("IoU (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    # Above the bars, under the title: next to the first rows however many classes follow.
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, ncol=1, frameon=False)
    ax.set_title(chart_title(title, shown), fontsize=9, loc="left", pad=_LEGEND_PAD)
    out = {}
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight", metadata=_METADATA[fmt])
        out[fmt] = buf.getvalue()
    if "png" in out:
        out["png"] = compact_png(out["png"])
    return out


PNG_COLOURS = 64
"""Palette of the per-class PNGs: two bar colours, text and grid with their anti-aliasing fit in 64 colours,
and the file is about a third of matplotlib's RGBA (the report inlines one chart per pair and dataset)."""


def compact_png(data: bytes) -> bytes:
    """``data`` (a chart PNG) as a :data:`PNG_COLOURS`-colour palette PNG (PIL, deterministic)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        palette = image.convert("RGB").quantize(colors=PNG_COLOURS, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    palette.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


_METADATA = {"png": {"Software": None}, "svg": {"Date": None}}  # reproducible bytes across runs


def write_class_chart(
    diff: ClassDifferences, label_a: str, label_b: str, title: str, stem: Path
) -> dict[str, bytes]:
    """Write ``<stem>.png`` and ``<stem>.svg``; returns their bytes (the report inlines them)."""
    charts = class_chart(diff, label_a, label_b, title)
    for fmt, data in charts.items():
        atomic_write_bytes(stem.parent / f"{stem.name}.{fmt}", data)
    return charts
