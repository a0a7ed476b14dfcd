"""Qualitative grids as papers draw them: Image | GT | one column per method, one row per image.

``cliptrase-eval save_predictions=K`` writes, per run, ``<experiment>/predictions/<run>/<stem>_labels.png``
(the prediction) and the image and GT that run scored at display size (``<stem>_image.jpg``,
``<stem>_gt.png``; :mod:`cliptrase.inference.prediction_files`). A grid per dataset (and protocol) takes K
image stems — given by ``--images``, or by default the K saved images on which the methods' per-image mIoU
(from ``per_image.npz``) spreads most, so the figure shows where they differ — and draws the GT and every
prediction as a plain colour map (or, on request, as an overlay on the image) with the dataset's fixed
palette (:mod:`cliptrase.utils.colours`: a class has one colour in every column and figure), ignored
pixels in white, and a legend per row listing the classes present in that row's GT and predictions.

A run without saved predictions is named, never silently dropped; a run saved before the grid inputs
existed (``<stem>_overlay.png`` only) is named too, with the command that refreshes it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cliptrase.inference.overlay import blend, colour_map
from cliptrase.inference.prediction_files import (
    GT_SUFFIX,
    IMAGE_SUFFIX,
    LABELS_SUFFIX,
    OVERLAY_SUFFIX,
    read_labels,
    resize_labels,
)
from cliptrase.records.per_image import load_per_image
from cliptrase.records.results import ResultRecord
from cliptrase.reporting.tables import column_order
from cliptrase.stats.comparisons import latest_records
from cliptrase.utils.colours import class_colours

logger = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"
"""Folder of an experiment holding ``save_predictions`` outputs, one subfolder per run."""
DEFAULT_IMAGES = 4
FIGURE_LEGEND_MAX = 16
"""Most legend entries per row in the PNG/PDF figure (largest classes first; the HTML lists all)."""
_TILE_INCH = 1.3
_GAP_INCH = 0.05
_MARGIN_INCH = 0.35  # left, for the row labels
_TITLE_INCH = 0.45  # above each dataset's first row, for the column titles
_LEGEND_INCH = 1.7
_LEGEND_LINE_INCH = 0.105  # one legend entry at 5 pt
_LEGEND_CHARS = 30  # characters of a class name in a one-column legend (half in two columns)
_DPI = 150
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None}}  # same bytes on every run


@dataclass(frozen=True, eq=False)
class Grid:
    """One dataset's grid (one protocol, one class list).

    Attributes:
        dataset: title (the table column, with the protocol when a column has several).
        class_names: the scored classes, indexed by label.
        colours: (C, 3) uint8, the fixed palette of ``class_names`` on this dataset.
        methods: table row labels, one column each.
        stems: the chosen images, one row each.
        images: per stem, the stored display-size image.
        gts: per stem, the stored display-size GT (None: the run saved none).
        cells: ``cells[i][j]``: the label map of image ``stems[i]`` by ``methods[j]`` (None: not saved).
        spreads: per stem, max - min of the methods' per-image mIoU in % (None: no per-image records).
    """

    dataset: str
    class_names: tuple[str, ...]
    colours: np.ndarray
    methods: tuple[str, ...]
    stems: tuple[str, ...]
    images: tuple[Path, ...]
    gts: tuple[Path | None, ...]
    cells: tuple[tuple[Path | None, ...], ...]
    spreads: tuple[float | None, ...] = field(default=())


@dataclass(frozen=True)
class Qualitative:
    """The grids of an experiment, the runs that saved no predictions and those saved in the old format."""

    grids: tuple[Grid, ...]
    without_predictions: tuple[str, ...]
    old_format: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Saved:
    """What one run saved: ``{stem: path}`` of its label maps, stored images and GTs."""

    record: ResultRecord
    labels: dict[str, Path]
    images: dict[str, Path]
    gts: dict[str, Path]


def _files(folder: Path, suffix: str) -> dict[str, Path]:
    return {p.name.removesuffix(suffix): p for p in sorted(folder.glob(f"*{suffix}"))}


def saved_by(experiment_dir: Path, record: ResultRecord) -> _Saved:
    """The prediction files ``record``'s run saved (all empty when it saved none)."""
    folder = Path(experiment_dir) / PREDICTIONS_DIR / record.run
    return _Saved(
        record, _files(folder, LABELS_SUFFIX), _files(folder, IMAGE_SUFFIX), _files(folder, GT_SUFFIX)
    )


def dataset_colours(dataset: str, class_names: Sequence[str]) -> np.ndarray:
    """The fixed palette of ``class_names`` on ``dataset``: its ``METAINFO`` palette where it has one."""
    from cliptrase.datasets.spec import get_dataset_class

    try:
        meta = get_dataset_class(dataset).METAINFO
    except KeyError:
        return class_colours(class_names)
    return class_colours(class_names, meta.get("classes", ()), meta.get("palette", ()))


def collect_grids(
    records: Sequence[ResultRecord], experiment_dir: Path, *, stems: Sequence[str] | None, k: int
) -> Qualitative:
    """One :class:`Grid` per dataset (and protocol) with predictions; unknown ``stems`` are a
    ``ValueError``."""
    groups: dict[tuple, list[_Saved]] = {}
    without, old = [], []
    for rec in sorted(latest_records(records), key=lambda r: r.run):
        saved = saved_by(experiment_dir, rec)
        folder = Path(experiment_dir) / PREDICTIONS_DIR / rec.run
        if saved.labels and saved.images:
            groups.setdefault(_group_key(rec), []).append(saved)
        elif saved.labels or any(folder.glob(f"*{OVERLAY_SUFFIX}")):
            old.append(rec.run)
        else:
            without.append(rec.run)
    _warn_missing(without, old)
    known = column_order()
    order = sorted(groups, key=lambda key: (known.index(key[0]) if key[0] in known else 99, key))
    columns = [key[0] for key in order]
    grids = []
    for key in order:
        title = key[0] if columns.count(key[0]) == 1 else f"{key[0]} ({key[1]})"
        grids.append(_grid(title, experiment_dir, groups[key], stems, k))
    return Qualitative(tuple(g for g in grids if g.stems), tuple(without), tuple(old))


def _group_key(rec: ResultRecord) -> tuple[str, str, tuple[str, ...]]:
    """Runs share a grid when they scored the same dataset under the same protocol and class list."""
    protocol = rec.config.get("protocol", {})
    name = protocol.get("name", rec.metric_definition) if isinstance(protocol, dict) else str(protocol)
    return rec.column, str(name), tuple(rec.class_names)


def _warn_missing(without: list[str], old: list[str]) -> None:
    if without:
        logger.warning(
            "%d run(s) saved no predictions (re-run them with save_predictions=K for the qualitative "
            "grid): %s",
            len(without),
            ", ".join(without),
        )
    if old:
        logger.warning(
            "%d run(s) saved predictions without the grid's image and GT (an older version; delete their "
            "predictions folder and re-run them with save_predictions=K): %s",
            len(old),
            ", ".join(old),
        )


def _grid(title: str, experiment_dir: Path, runs: list[_Saved], stems: Sequence[str] | None, k: int) -> Grid:
    first = runs[0].record
    images = {s: p for run in reversed(runs) for s, p in run.images.items()}  # the first run's wins
    gts = {s: p for run in reversed(runs) for s, p in run.gts.items()}
    spreads = _spreads(experiment_dir, runs)
    if stems:
        known = set().union(*(set(r.labels) for r in runs)) & set(images)
        unknown = [s for s in stems if s not in known]
        if unknown:
            raise ValueError(
                f"--images {', '.join(unknown)}: no saved prediction of that image on {first.column}; saved: "
                f"{', '.join(sorted(known)[:20])}"
            )
        chosen = tuple(stems)
    else:
        common = set.intersection(*(set(r.labels) for r in runs)) & set(images)
        chosen = tuple(sorted(common, key=lambda s: (-spreads.get(s, -1.0), s))[:k])
    return Grid(
        dataset=title,
        class_names=tuple(first.class_names),
        colours=dataset_colours(first.column, first.class_names),
        methods=tuple(r.record.row for r in runs),
        stems=chosen,
        images=tuple(images[s] for s in chosen),
        gts=tuple(gts.get(s) for s in chosen),
        cells=tuple(tuple(r.labels.get(s) for r in runs) for s in chosen),
        spreads=tuple(spreads.get(s) for s in chosen),
    )


def per_image_miou(experiment_dir: Path, record: ResultRecord) -> dict[str, float]:
    """``{stem: mIoU in %}`` of one run from its ``per_image.npz`` (empty without one): per image, the mean
    IoU over the classes in its GT or prediction."""
    counts = load_per_image(experiment_dir, record)
    if counts is None:
        return {}
    inter, gt, pred = counts.marginals()
    union = gt + pred - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
    present = (union > 0).any(axis=1)
    miou = np.full(counts.n_images, np.nan)
    miou[present] = 100 * np.nanmean(iou[present], axis=1)
    return {s: float(v) for s, v in zip(counts.image_ids, miou) if not np.isnan(v)}


def _spreads(experiment_dir: Path, runs: list[_Saved]) -> dict[str, float]:
    """``{stem: max - min per-image mIoU}`` over the runs that have per-image records (at least two)."""
    per_run = [m for m in (per_image_miou(experiment_dir, r.record) for r in runs) if m]
    if len(per_run) < 2:
        logger.info(
            "%s: fewer than two runs with per-image records; the grid takes the first images by name",
            runs[0].record.column,
        )
        return {}
    stems = set.intersection(*(set(m) for m in per_run))
    return {s: max(m[s] for m in per_run) - min(m[s] for m in per_run) for s in stems}


@dataclass(frozen=True)
class GridRow:
    """One row drawn: the image, the GT and every method's cell at the image's display size, and the
    classes of its legend (present in the GT or a prediction, largest total area first)."""

    image: Image.Image
    gt: Image.Image | None
    cells: tuple[Image.Image | None, ...]
    legend: tuple[int, ...]


def grid_row(grid: Grid, i: int, *, overlay: bool = False) -> GridRow:
    """Row ``i`` of ``grid`` as images: colour maps (``overlay``: prediction cells blended on the image)."""
    with Image.open(grid.images[i]) as im:
        image = im.convert("RGB")
    hw = (image.height, image.width)
    gt = None if grid.gts[i] is None else resize_labels(read_labels(grid.gts[i]), hw)
    preds = [None if p is None else resize_labels(read_labels(p), hw) for p in grid.cells[i]]
    n = len(grid.class_names)
    area = np.zeros(n + 1, dtype=np.int64)
    for labels in [gt, *preds]:
        if labels is not None:
            area += np.bincount(np.where((labels >= 0) & (labels < n), labels, n).ravel(), minlength=n + 1)
    legend = tuple(int(c) for c in np.argsort(-area[:n], kind="stable") if area[c] > 0)

    def draw(labels: np.ndarray) -> Image.Image:
        return blend(image, labels, grid.colours) if overlay else colour_map(labels, grid.colours)

    return GridRow(
        image=image,
        gt=None if gt is None else colour_map(gt, grid.colours),
        cells=tuple(None if p is None else draw(p) for p in preds),
        legend=legend,
    )


def grid_figure(grids: Sequence[Grid], *, overlay: bool = False) -> dict[str, bytes]:
    """All grids stacked in one figure (a block of rows per dataset), as ``{"png": ..., "pdf": ...}``:
    columns Image | GT | methods | legend, each row as high as its image's aspect asks.

    Axes are placed at computed positions (no layout engine: hundreds of tiles lay out instantly and the
    same grids give the same bytes).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [(grid, i, grid_row(grid, i, overlay=overlay)) for grid in grids for i in range(len(grid.stems))]
    n_tiles = 2 + max(len(g.methods) for g in grids)
    heights = [_row_height(drawn.image) for _, _, drawn in rows]
    width = _MARGIN_INCH + n_tiles * (_TILE_INCH + _GAP_INCH) + _LEGEND_INCH
    height = sum(heights) + _GAP_INCH * len(rows) + _TITLE_INCH * len(grids)
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    top = 0.0
    for (grid, i, drawn), row_h in zip(rows, heights):
        top += _TITLE_INCH if i == 0 else 0.0
        tiles = [drawn.image, drawn.gt, *drawn.cells]
        titles = ["Image", "GT", *(_wrap(m) for m in grid.methods)]
        for j, tile in enumerate(tiles):
            left = _MARGIN_INCH + j * (_TILE_INCH + _GAP_INCH)
            ax = fig.add_axes(_box(left, top, _TILE_INCH, row_h, (width, height)))
            _tile(ax, tile)
            if i == 0:
                ax.set_title(titles[j], fontsize=6)
            if j == 0:
                ax.set_ylabel(f"{grid.dataset}\n{grid.stems[i]}", fontsize=6)
        left = _MARGIN_INCH + n_tiles * (_TILE_INCH + _GAP_INCH)
        legend_ax = fig.add_axes(_box(left, top, _LEGEND_INCH, row_h, (width, height)))
        _legend(legend_ax, grid, drawn.legend, row_h)
        top += row_h + _GAP_INCH
    out = {}
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=_DPI, metadata=_METADATA[fmt])
        out[fmt] = buf.getvalue()
    return out


def _box(left: float, top: float, w: float, h: float, size: tuple[float, float]) -> tuple[float, ...]:
    """Axes rectangle (figure fractions, from the bottom) of a box given in inches from the top left."""
    fig_w, fig_h = size
    return (left / fig_w, 1 - (top + h) / fig_h, w / fig_w, h / fig_h)


def _row_height(image: Image.Image) -> float:
    """A tile is :data:`_TILE_INCH` wide; its height follows the image (between half and 1.5 times)."""
    return _TILE_INCH * min(1.5, max(0.5, image.height / image.width))


def _tile(ax, image: Image.Image | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if image is not None:
        ax.imshow(np.asarray(image), interpolation="nearest", aspect="auto")
    else:
        ax.text(0.5, 0.5, "not saved", ha="center", va="center", fontsize=6)


def _legend(ax, grid: Grid, classes: Sequence[int], row_h: float) -> None:
    """The row's classes as colour patches, largest first: as many as fit the row's height in two columns
    (at most :data:`FIGURE_LEGEND_MAX`), then a count of the rest; names shortened to fit the column."""
    from matplotlib.patches import Patch

    ax.set_axis_off()
    per_column = max(3, int(row_h / _LEGEND_LINE_INCH))
    fit = min(FIGURE_LEGEND_MAX, 2 * per_column)
    shown = classes if len(classes) <= fit else classes[: fit - 1]
    ncol = 1 if len(classes) <= per_column else 2
    chars = _LEGEND_CHARS // ncol
    handles = [
        Patch(
            facecolor=grid.colours[c] / 255,
            edgecolor="black",
            linewidth=0.3,
            label=_short(grid.class_names[c], chars),
        )
        for c in shown
    ]
    if len(classes) > len(shown):
        handles.append(Patch(facecolor="none", edgecolor="none", label=f"+{len(classes) - len(shown)} more"))
    if handles:
        ax.legend(
            handles=handles,
            loc="center left",
            fontsize=5,
            frameon=False,
            ncol=ncol,
            handlelength=1.0,
            columnspacing=0.6,
            borderaxespad=0,
        )


def _short(name: str, chars: int) -> str:
    """A class name for a legend column: its first synonym (ADE lists ``person, individual, ...``), cut
    to ``chars`` characters."""
    first = name.split(",")[0].strip() or name
    return first if len(first) <= chars else first[: chars - 1] + "…"


def _wrap(label: str) -> str:
    """Row labels are ``a | b | c``: one field per line keeps columns narrow."""
    return "\n".join(part.strip() for part in label.split("|"))
