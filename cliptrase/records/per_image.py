"""Per-image confusion counts of a run (``per_image.npz`` beside ``metrics.json``), for statistics without
re-running: bootstrap intervals and paired comparisons (:mod:`cliptrase.stats.bootstrap`).

Both metric definitions sum per-image confusion matrices, so the per-image matrices are the sufficient
statistic of every number a record holds: mmseg's ``IoUMetric`` sums per-image intersections, prediction
and GT areas (the diagonal, column and row sums of the matrix), and the authors' ``paper_scores`` sums the
matrix itself. An image fills a few dozen of the C² cells, so the matrices are stored sparse (CSR over
images) and compressed. The format is documented in ``docs/records.md``.
"""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cliptrase.errors import DataError
from cliptrase.records.results import ResultRecord, atomic_write_bytes

logger = logging.getLogger(__name__)

PER_IMAGE_FILE = "per_image.npz"
PER_IMAGE_VERSION = 1
"""Version of the ``per_image.npz`` layout (docs/records.md); bumped on incompatible changes."""


@dataclass(frozen=True)
class ImageCells:
    """One image's confusion matrix as its non-zero cells (what a metric keeps per processed image).

    A plain dataclass, not a tuple: mmengine's result gathering rebuilds tuples as plain tuples.

    Attributes:
        image_id: file stem of the image (pairs images across runs; names the saved predictions).
        cells: flat indices ``gt * side + pred`` of the non-zero cells, unique, int64.
        counts: pixel count of each cell, int64.
        scored: False for an image the metric leaves out (the authors' skipped images); kept as an entry so
            that distributed padding is still dropped by position.
    """

    image_id: str
    cells: np.ndarray
    counts: np.ndarray
    scored: bool = True


def image_cells(image_id: str, hist: np.ndarray, *, scored: bool = True) -> ImageCells:
    """:class:`ImageCells` of a flat (side * side,) confusion histogram, ``gt * side + pred``
    (:func:`cliptrase.utils.confusion.confusion_counts`: the metric's own rule for which pixels count)."""
    cells = np.flatnonzero(hist)
    return ImageCells(image_id, cells, hist[cells].astype(np.int64, copy=False), scored)


@dataclass(frozen=True)
class PerImageCounts:
    """Sparse per-image confusion matrices of one run (rows = GT, columns = prediction).

    Attributes:
        metric_definition: ``"mmseg_iou"`` or ``"paper_scores"``, as in the record.
        num_classes: C, the classes of the record's per-class lists.
        side: side of each matrix: C (paper metric), or C + 1 for mmseg, whose extra last row/column
            counts pixels whose GT / prediction lies outside 0..C-1 (mmseg still counts the other label
            of such a pixel in its areas).
        image_ids: (N,) image stems in dataset order.
        offsets: (N + 1,) int64; image i owns entries ``offsets[i]:offsets[i + 1]``.
        cells: (nnz,) int64 flat cell indices ``gt * side + pred``.
        counts: (nnz,) int64 pixel counts.
    """

    metric_definition: str
    num_classes: int
    side: int
    image_ids: tuple[str, ...]
    offsets: np.ndarray
    cells: np.ndarray
    counts: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.image_ids)
        if self.side not in (self.num_classes, self.num_classes + 1):
            raise ValueError(f"side {self.side} must be num_classes ({self.num_classes}) or num_classes + 1")
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 or self.offsets[-1] != len(self.cells):
            raise ValueError(f"offsets must have {n + 1} entries from 0 to {len(self.cells)}")
        if self.cells.shape != self.counts.shape:
            raise ValueError("cells and counts differ in length")
        if len(self.cells) and (self.cells.min() < 0 or self.cells.max() >= self.side**2):
            raise ValueError(f"cell indices must lie in 0..{self.side**2 - 1}")

    @property
    def n_images(self) -> int:
        """Number of images (N)."""
        return len(self.image_ids)

    @classmethod
    def from_entries(
        cls, entries: Sequence[ImageCells], *, metric_definition: str, num_classes: int, side: int
    ) -> PerImageCounts:
        """Pack the scored entries of a metric's gathered results (dataset order) into one CSR block."""
        kept = [e for e in entries if e.scored]
        sizes = np.array([len(e.cells) for e in kept], dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64)
        return cls(
            metric_definition=metric_definition,
            num_classes=int(num_classes),
            side=int(side),
            image_ids=tuple(e.image_id for e in kept),
            offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            cells=np.concatenate([e.cells for e in kept]).astype(np.int64) if kept else empty,
            counts=np.concatenate([e.counts for e in kept]).astype(np.int64) if kept else empty,
        )

    def image_index(self) -> np.ndarray:
        """(nnz,) image index of every stored cell."""
        return np.repeat(np.arange(self.n_images), np.diff(self.offsets))

    def total(self) -> np.ndarray:
        """(side, side) int64 confusion matrix summed over images."""
        hist = np.zeros(self.side**2, dtype=np.int64)
        np.add.at(hist, self.cells, self.counts)
        return hist.reshape(self.side, self.side)

    def marginals(self) -> np.ndarray:
        """(3, N, C) float64 per image: [intersection (diagonal), GT area (row sums), prediction area
        (column sums)] of the C classes.

        Everything either metric needs; float64 holds these integer sums exactly (below 2**53).
        """
        c, n = self.num_classes, self.n_images
        img = self.image_index()
        gt, pred = np.divmod(self.cells, self.side)
        weights = self.counts.astype(np.float64)
        series = (((gt == pred) & (gt < c), gt), (gt < c, gt), (pred < c, pred))
        out = np.zeros((3, n * c), dtype=np.float64)
        for k, (mask, label) in enumerate(series):
            out[k] = np.bincount(img[mask] * c + label[mask], weights=weights[mask], minlength=n * c)
        return out.reshape(3, n, c)

    def select(self, order: np.ndarray) -> PerImageCounts:
        """The same counts with images reordered (or subset) by the index array ``order``."""
        sizes = np.diff(self.offsets)[order]
        starts = self.offsets[:-1][order]
        take = np.concatenate([np.arange(s, s + k) for s, k in zip(starts, sizes)]) if len(order) else []
        take = np.asarray(take, dtype=np.int64)
        return PerImageCounts(
            metric_definition=self.metric_definition,
            num_classes=self.num_classes,
            side=self.side,
            image_ids=tuple(self.image_ids[i] for i in order),
            offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            cells=self.cells[take],
            counts=self.counts[take],
        )

    def to_npz(self, *, config_hash: str) -> bytes:
        """The compressed ``per_image.npz`` bytes (layout: docs/records.md)."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            format_version=np.int64(PER_IMAGE_VERSION),
            metric_definition=np.str_(self.metric_definition),
            config_hash=np.str_(config_hash),
            num_classes=np.int64(self.num_classes),
            side=np.int64(self.side),
            image_ids=np.array(self.image_ids, dtype=np.str_),
            offsets=self.offsets.astype(np.int64),
            cells=self.cells.astype(np.int32 if self.side**2 < 2**31 else np.int64),
            counts=self.counts.astype(np.int64),
        )
        return buf.getvalue()

    @classmethod
    def from_npz(cls, path: Path) -> tuple[PerImageCounts, str]:
        """Read a ``per_image.npz``; returns the counts and the config hash they were made with.

        Raises:
            ValueError: not a per-image file of this version (names the file and the problem).
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:  # truncated, corrupt
            raise ValueError(f"{path} exists but is unreadable (truncated or corrupt: {err})") from None
        missing = sorted(set(_NPZ_KEYS) - fields.keys())
        if missing:
            raise ValueError(f"{path}: missing array(s) {', '.join(missing)}")
        version = int(fields["format_version"])
        if version != PER_IMAGE_VERSION:
            raise ValueError(f"{path}: format_version {version}, this version reads {PER_IMAGE_VERSION}")
        try:
            counts = cls(
                metric_definition=str(fields["metric_definition"]),
                num_classes=int(fields["num_classes"]),
                side=int(fields["side"]),
                image_ids=tuple(str(s) for s in fields["image_ids"]),
                offsets=fields["offsets"].astype(np.int64),
                cells=fields["cells"].astype(np.int64),
                counts=fields["counts"].astype(np.int64),
            )
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        return counts, str(fields["config_hash"])


_NPZ_KEYS = (
    "format_version",
    "metric_definition",
    "config_hash",
    "num_classes",
    "side",
    "image_ids",
    "offsets",
    "cells",
    "counts",
)


def write_per_image(counts: PerImageCounts, out_dir: Path, *, config_hash: str) -> Path:
    """Write ``out_dir/per_image.npz`` atomically (before ``metrics.json``, which marks the run complete)."""
    path = Path(out_dir) / PER_IMAGE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, counts.to_npz(config_hash=config_hash))
    logger.info("wrote per-image confusion counts of %d images to %s", counts.n_images, path)
    return path


def per_image_path(experiment_dir: Path, run: str) -> Path | None:
    """The ``per_image.npz`` of run folder ``run`` (directly under the experiment or one sweep deeper)."""
    root = Path(experiment_dir)
    direct = root / run / PER_IMAGE_FILE
    if direct.is_file():
        return direct
    return next(iter(sorted(root.glob(f"*/{run}/{PER_IMAGE_FILE}"))), None)


RECOMPUTE = (
    "recompute it by re-running that job with results.overwrite=true (its config is in the run's "
    "metrics.json), or delete the run folder and re-run the sweep"
)
"""How a user gets a usable ``per_image.npz`` back: a re-run skips a complete record unless told to
overwrite it (``results`` is not part of the config hash, so the run folder is the same)."""


class UnusablePerImageError(DataError):
    """A run's ``per_image.npz`` exists but cannot be used: unreadable (truncated, corrupt), another layout
    version, or made by another config; the message names the file, the problem and :data:`RECOMPUTE`."""


def read_per_image(experiment_dir: Path, record: ResultRecord) -> PerImageCounts | None:
    """The per-image counts of ``record``; None when the run has no file (records written before per-image
    files existed).

    Raises:
        UnusablePerImageError: the file is there but unreadable, of another version, stale (another config
            hash or metric definition than the record's) or of another class count.
    """
    path = per_image_path(experiment_dir, record.run)
    if path is None:
        return None
    try:
        counts, digest = PerImageCounts.from_npz(path)
    except ValueError as err:
        raise UnusablePerImageError(f"{err}; {RECOMPUTE}") from None
    if digest != record.config_hash or counts.metric_definition != record.metric_definition:
        raise UnusablePerImageError(
            f"{path} was made by config {digest} / {counts.metric_definition}, the record is "
            f"{record.config_hash} / {record.metric_definition} (stale); {RECOMPUTE}"
        )
    if counts.num_classes != len(record.class_names):
        raise UnusablePerImageError(
            f"{path} has {counts.num_classes} classes, the record {len(record.class_names)}; {RECOMPUTE}"
        )
    return counts


def load_per_image(experiment_dir: Path, record: ResultRecord) -> PerImageCounts | None:
    """:func:`read_per_image`, with None (and the reason logged) instead of an unusable file's error.

    Records written before per-image files existed simply have none: they load, without intervals (INFO).
    An unusable file is named in a WARNING with how to recompute it.
    """
    try:
        counts = read_per_image(experiment_dir, record)
    except UnusablePerImageError as err:
        logger.warning("ignoring per-image file: %s", err)
        return None
    if counts is None:
        logger.info("run %s has no %s (older record): no intervals for it", record.run, PER_IMAGE_FILE)
    return counts
