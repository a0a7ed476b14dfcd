"""Per-class view of a paired comparison: per-class IoU of rows A and B as a sorted bar chart (PNG + SVG).

Classes are sorted by the difference A - B, so gains and losses sit at the two ends. Large vocabularies
(PC-459, ADE-847) would give charts nobody can read: beyond :data:`MAX_CHART_CLASSES` classes the chart
shows the largest gains and the largest losses, and says so; the CSV always lists every class.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from cliptrase.records.results import atomic_write_bytes
from cliptrase.stats.comparisons import ClassDifferences

MAX_CHART_CLASSES = 60
"""Most classes drawn in one chart (half gains, half losses beyond it)."""

_COLOURS = ("#1f77b4", "#ff7f0e")  # tab10's first two, as the table chart's first two rows
_INCH_PER_CLASS = 0.22


def chart_classes(diff: ClassDifferences) -> tuple[np.ndarray, int]:
    """Indices of the classes to draw, sorted by A - B descending, and how many classes have a value.

    Classes absent from the GT (NaN difference) are not drawn.
    """
    defined = np.flatnonzero(~np.isnan(diff.diff))
    order = defined[np.argsort(-diff.diff[defined], kind="stable")]
    if len(order) > MAX_CHART_CLASSES:
        half = MAX_CHART_CLASSES // 2
        order = np.concatenate([order[:half], order[-half:]])
    return order, len(defined)


def class_chart(diff: ClassDifferences, label_a: str, label_b: str, title: str) -> dict[str, bytes]:
    """The chart as ``{"png": bytes, "svg": bytes}`` (matplotlib's object API on an Agg canvas, which
    renders headless without switching the backend of a user's session)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    order, n_defined = chart_classes(diff)
    fig = Figure(figsize=(8.0, 1.6 + _INCH_PER_CLASS * max(1, len(order))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ys = np.arange(len(order))
    height = 0.4
    ax.barh(ys - height / 2, np.nan_to_num(diff.a[order]), height, label=label_a, color=_COLOURS[0])
    ax.barh(ys + height / 2, np.nan_to_num(diff.b[order]), height, label=label_b, color=_COLOURS[1])
    ax.set_yticks(ys, [f"{diff.class_names[i]} ({diff.diff[i]:+.1f})" for i in order], fontsize=7)
    ax.invert_yaxis()  # largest gain on top
    ax.set_xlabel("IoU (%)")
    shown = "" if len(order) == n_defined else f" ({len(order)} of {n_defined} classes: largest gains/losses)"
    ax.set_title(f"{title}{shown}", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.6 / fig.get_figheight()), fontsize=7, ncol=1)
    out = {}
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight", metadata=_METADATA[fmt])
        out[fmt] = buf.getvalue()
    return out


_METADATA = {"png": {"Software": None}, "svg": {"Date": None}}  # reproducible bytes across runs


def write_class_chart(
    diff: ClassDifferences, label_a: str, label_b: str, title: str, stem: Path
) -> dict[str, bytes]:
    """Write ``<stem>.png`` and ``<stem>.svg``; returns their bytes (the report inlines them)."""
    charts = class_chart(diff, label_a, label_b, title)
    for fmt, data in charts.items():
        atomic_write_bytes(stem.parent / f"{stem.name}.{fmt}", data)
    return charts
