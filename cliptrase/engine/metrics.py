"""mmengine metrics: the authors' ``paper_scores`` for the paper protocol (mmseg's ``IoUMetric`` is used
as is for the standard protocol).

Both keep each image's confusion matrix as its non-zero cells, one result entry per image, so that
mmengine gathers them across torchrun ranks like any result (and drops the sampler's padding by entry
position); after ``compute_metrics`` the metric's ``per_image`` holds them in dataset order
(:class:`~cliptrase.records.per_image.PerImageCounts`, written as ``per_image.npz``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmseg.evaluation import IoUMetric

from cliptrase.engine.paper_metric import PAPER_METRIC, confusion_matrix, paper_scores
from cliptrase.records.per_image import ImageCells, PerImageCounts, image_cells, write_per_image
from cliptrase.registry import METRICS
from cliptrase.utils.confusion import confusion_counts
from cliptrase.utils.profiling import stage

logger = logging.getLogger(__name__)

MMSEG_METRIC = "mmseg_iou"
"""Name recorded next to numbers produced by :class:`IoUMetricPerClass` (mmseg's ``IoUMetric``)."""


def _image_id(sample: dict) -> str:
    """File stem of the sample's image ("" for synthetic samples without a path)."""
    path = sample.get("img_path")
    return Path(path).stem if path else ""


@METRICS.register_module()
class PaperMetric(BaseMetric):
    """Confusion matrix over the dataset with the authors' definitions (docs/method.md §5.2).

    Images the authors' script skips (``paper_scored`` False in the metainfo) are left out.

    Args:
        num_classes: classes in the matrix (C, plus one background on the with-background sets).
        class_names: names for the per-class report.
    """

    default_prefix = ""

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.per_image: PerImageCounts | None = None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each image's confusion matrix as its non-zero (cell, count) pairs.

        A dense matrix per image would grow by C² int64 per image (1.7 MB on PC-459, 5.7 MB on ADE-847);
        an image fills a few dozen cells. One entry per image, skipped images included (flagged, no
        cells), because under distributed runs mmengine drops the sampler's padding duplicates by entry
        position.
        """
        with stage("metric"):
            for sample in data_samples:
                if not sample.get("paper_scored", True):
                    empty = np.zeros(0, dtype=np.int64)
                    self.results.append(ImageCells(_image_id(sample), empty, empty, scored=False))
                    continue
                pred = sample["pred_sem_seg"]["data"].squeeze(0).cpu().numpy()
                gt = sample["gt_sem_seg"]["data"].squeeze(0).cpu().numpy()
                hist = confusion_matrix(gt, pred, self.num_classes).ravel()
                cells = np.flatnonzero(hist)
                self.results.append(ImageCells(_image_id(sample), cells, hist[cells]))

    def compute_metrics(self, results: list) -> dict:
        self.per_image = PerImageCounts.from_entries(
            results, metric_definition=PAPER_METRIC, num_classes=self.num_classes, side=self.num_classes
        )
        scores = paper_scores(self.per_image.total())
        logger.info(
            "paper metric over %d scored images: %s",
            self.per_image.n_images,
            {k: v for k, v in scores.items() if k != "per_class_IoU"},
        )
        return scores


@METRICS.register_module()
class IoUMetricPerClass(IoUMetric):
    """mmseg's ``IoUMetric`` (the standard protocol's metric, unchanged) that also returns per-class IoU
    and accuracy (percent; NaN where the class has no union / no GT), so results can store them, and keeps
    each image's confusion matrix (``per_image`` after ``compute_metrics``).

    The matrices have one extra row and column (index C) for labels outside 0..C-1 that are not
    ``ignore_index``: mmseg's areas count the in-range label of such a pixel, so the diagonal, row and
    column sums over the first C entries equal mmseg's intersection, GT and prediction areas exactly.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.per_image: PerImageCounts | None = None

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """mmseg's per-image areas (four C-vectors per image, kept as mmseg keeps them), each entry
        extended by the image's :class:`ImageCells`.

        The areas are read off the image's confusion cells (:func:`mmseg_areas`; the cells counted in one
        compiled pass, :func:`~cliptrase.utils.confusion.confusion_counts`, instead of mmseg's masking and
        three ``histc``), equal to ``IoUMetric.intersect_and_union``'s; mmseg's own
        ``process`` runs where it writes predictions (``format_only``, ``output_dir``) and for images of
        :data:`MAX_EXACT_PIXELS` pixels or more (where its float32 ``histc`` counts stop being exact).
        """
        with stage("metric"):
            side = len(self.dataset_meta["classes"]) + 1
            for sample in data_samples:
                if self.format_only or self.output_dir is not None or _pixels(sample) >= MAX_EXACT_PIXELS:
                    before = len(self.results)
                    super().process(data_batch, [sample])
                    if len(self.results) > before:  # mmseg appended this image's areas
                        self.results[-1] = (*self.results[-1], self._cells(sample))
                    continue
                cells = self._cells(sample)
                self.results.append((*mmseg_areas(cells, side), cells))

    def _cells(self, sample: dict) -> ImageCells:
        side = len(self.dataset_meta["classes"]) + 1
        pred = sample["pred_sem_seg"]["data"].cpu().numpy()
        gt = sample["gt_sem_seg"]["data"].cpu().numpy()
        return image_cells(_image_id(sample), confusion_counts(gt, pred, side, self.ignore_index))

    def compute_metrics(self, results: list) -> dict:
        side = len(self.dataset_meta["classes"]) + 1
        self.per_image = PerImageCounts.from_entries(
            [r[4] for r in results], metric_definition=MMSEG_METRIC, num_classes=side - 1, side=side
        )
        areas = [r[:4] for r in results]
        summary = super().compute_metrics(areas)
        cols = tuple(zip(*areas))
        area = [sum(c) for c in cols[:4]]
        per = self.total_area_to_metrics(*area, ["mIoU"], self.nan_to_num, self.beta)
        summary["per_class_IoU"] = [round(float(v) * 100, 2) for v in per["IoU"]]
        summary["per_class_Acc"] = [round(float(v) * 100, 2) for v in per["Acc"]]
        return summary


MAX_EXACT_PIXELS = 2**24
"""Pixels from which mmseg's float32 ``histc`` areas may round (2**24 + 1 is not a float32)."""


def _pixels(sample: dict) -> int:
    return int(sample["gt_sem_seg"]["data"].numel())


def mmseg_areas(
    cells: ImageCells, side: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``IoUMetric.intersect_and_union``'s (intersection, union, prediction, GT) areas of one image from its
    (side, side) confusion cells (:meth:`IoUMetricPerClass._cells`; index side - 1 = outside the classes).

    mmseg counts a pixel's prediction in its class even where the GT lies outside the classes (and the
    reverse), so the areas are the diagonal and the full row / column sums, over the first C = side - 1
    classes; float32 CPU tensors as ``histc`` returns them, union summed in mmseg's order.
    """
    n = side - 1
    gt, pred = np.divmod(cells.cells, side)
    counts = cells.counts.astype(np.float64)
    area_gt = np.bincount(gt, weights=counts, minlength=side)[:n]
    area_pred = np.bincount(pred, weights=counts, minlength=side)[:n]
    diagonal = gt == pred
    area_inter = np.bincount(gt[diagonal], weights=counts[diagonal], minlength=side)[:n]
    area_inter, area_pred, area_gt = (
        torch.from_numpy(a.astype(np.float32)) for a in (area_inter, area_pred, area_gt)
    )
    return area_inter, area_pred + area_gt - area_inter, area_pred, area_gt


class SavePerImageHook(Hook):
    """Write the metric's per-image confusion counts as ``<run folder>/per_image.npz`` after the test epoch.

    Only the process that computed the metric (rank 0 under torchrun) holds them, after mmengine gathered
    the per-image entries of every rank. The hook runs before the record is written, so a run folder with
    a complete ``metrics.json`` has its per-image file beside it.

    Args:
        run_dir: the run folder (``results/<experiment>/<run>``).
        config_hash: the record's config hash, stored in the file (a stale file is detected by it).
    """

    priority = "LOW"

    def __init__(self, run_dir: Path, config_hash: str) -> None:
        self.run_dir, self.config_hash = Path(run_dir), config_hash

    def after_test_epoch(self, runner, metrics: dict | None = None) -> None:
        for metric in runner.test_loop.evaluator.metrics:
            per_image = getattr(metric, "per_image", None)
            if per_image is not None:
                write_per_image(per_image, self.run_dir, config_hash=self.config_hash)
