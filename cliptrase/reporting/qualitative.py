"""Qualitative grids: the same K images x every method of an experiment, from ``save_predictions`` overlays.

``cliptrase-eval save_predictions=K`` writes ``<experiment>/predictions/<run>/<stem>_overlay.png`` (the
image blended with the predicted labels, legend included). A grid per dataset takes K image stems (given,
or the first K in sorted order that every method with predictions has) and one column per row of the
table; a run without saved predictions is named, never silently dropped.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cliptrase.records.results import ResultRecord
from cliptrase.reporting.tables import column_order
from cliptrase.stats.comparisons import latest_records

logger = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"
"""Folder of an experiment holding ``save_predictions`` outputs, one subfolder per run."""
OVERLAY_SUFFIX = "_overlay.png"
DEFAULT_IMAGES = 4
_TILE_INCH = 2.6
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None}}  # same bytes on every run


@dataclass(frozen=True)
class Grid:
    """One dataset's grid: ``cells[i][j]`` is the overlay of image ``stems[i]`` by ``methods[j]`` (None
    where that run did not save that image)."""

    dataset: str
    stems: tuple[str, ...]
    methods: tuple[str, ...]
    cells: tuple[tuple[Path | None, ...], ...]


@dataclass(frozen=True)
class Qualitative:
    """The grids of an experiment and the runs that saved no predictions."""

    grids: tuple[Grid, ...]
    without_predictions: tuple[str, ...]


def overlays_of(experiment_dir: Path, run: str) -> dict[str, Path]:
    """``{stem: overlay path}`` saved by ``run`` (empty when it saved none)."""
    folder = Path(experiment_dir) / PREDICTIONS_DIR / run
    return {p.name.removesuffix(OVERLAY_SUFFIX): p for p in sorted(folder.glob(f"*{OVERLAY_SUFFIX}"))}


def collect_grids(
    records: Sequence[ResultRecord], experiment_dir: Path, *, stems: Sequence[str] | None, k: int
) -> Qualitative:
    """One :class:`Grid` per dataset that has predictions; unknown ``stems`` are a ``ValueError``."""
    by_column: dict[str, list[tuple[str, dict[str, Path]]]] = {}
    without: list[str] = []
    for rec in sorted(latest_records(records), key=lambda r: r.run):
        overlays = overlays_of(experiment_dir, rec.run)
        if overlays:
            by_column.setdefault(rec.column, []).append((rec.row, overlays))
        else:
            without.append(rec.run)
    if without:
        logger.warning(
            "%d run(s) saved no predictions (re-run them with save_predictions=K for the qualitative "
            "grid): %s",
            len(without),
            ", ".join(without),
        )
    known = column_order()
    order = sorted(by_column, key=lambda c: (known.index(c) if c in known else 99, c))
    grids = tuple(_grid(column, by_column[column], stems, k) for column in order)
    return Qualitative(tuple(g for g in grids if g.stems), tuple(without))


def _grid(
    column: str, methods: list[tuple[str, dict[str, Path]]], stems: Sequence[str] | None, k: int
) -> Grid:
    if stems:
        known = set().union(*(set(o) for _, o in methods))
        unknown = [s for s in stems if s not in known]
        if unknown:
            raise ValueError(
                f"--images {', '.join(unknown)}: no saved prediction of that image on {column}; saved: "
                f"{', '.join(sorted(known)[:20])}"
            )
        chosen = tuple(stems)
    else:
        common = set.intersection(*(set(o) for _, o in methods))
        chosen = tuple(sorted(common)[:k])
    cells = tuple(tuple(overlays.get(stem) for _, overlays in methods) for stem in chosen)
    return Grid(column, chosen, tuple(row for row, _ in methods), cells)


def grid_figure(grids: Sequence[Grid]) -> dict[str, bytes]:
    """All grids stacked in one figure (a block of rows per dataset), as ``{"png": ..., "pdf": ...}``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    n_rows = sum(len(g.stems) for g in grids)
    n_cols = max(len(g.methods) for g in grids)
    fig = Figure(figsize=(_TILE_INCH * n_cols, _TILE_INCH * 0.8 * n_rows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    row = 0
    for grid in grids:
        for i, stem in enumerate(grid.stems):
            for j in range(n_cols):
                ax = axes[row][j]
                ax.set_xticks([])
                ax.set_yticks([])
                path = grid.cells[i][j] if j < len(grid.methods) else None
                if path is not None:
                    with Image.open(path) as im:
                        ax.imshow(im.convert("RGB"))
                elif j < len(grid.methods):
                    ax.text(0.5, 0.5, "no prediction", ha="center", va="center", fontsize=7)
                else:
                    ax.set_axis_off()
                if i == 0 and j < len(grid.methods):
                    ax.set_title(_wrap(grid.methods[j]), fontsize=7)
                if j == 0:
                    ax.set_ylabel(f"{grid.dataset}\n{stem}", fontsize=7)
            row += 1
    out = {}
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=130, metadata=_METADATA[fmt])
        out[fmt] = buf.getvalue()
    return out


def _wrap(label: str) -> str:
    """Row labels are ``a | b | c``: one field per line keeps columns narrow."""
    return "\n".join(part.strip() for part in label.split("|"))
