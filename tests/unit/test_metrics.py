"""The mmengine metrics of the harness against hand-computed confusion matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliptrase.engine.metrics import IoUMetricPerClass, PaperMetric
from cliptrase.engine.paper_metric import confusion_matrix, paper_scores
from cliptrase.utils.confusion import confusion_counts, confusion_counts_numpy

GT = [np.array([[0, 0, 1], [1, 2, 255]]), np.array([[2, 2, 0], [0, 1, 1]])]
PRED = [np.array([[0, 1, 1], [1, 2, 0]]), np.array([[2, 0, 0], [0, 1, 2]])]


def _samples(scored=(True, True)):
    return [
        {
            "pred_sem_seg": {"data": torch.from_numpy(p)[None]},
            "gt_sem_seg": {"data": torch.from_numpy(g)[None]},
            "paper_scored": s,
        }
        for p, g, s in zip(PRED, GT, scored)
    ]


def test_iou_metric_equals_hand_computed_confusion():
    metric = IoUMetricPerClass(iou_metrics=["mIoU"], ignore_index=255)
    metric.dataset_meta = {"classes": ("a", "b", "c")}
    metric.process({}, _samples())
    out = metric.compute_metrics(metric.results)
    hist = sum(confusion_matrix(g, p, 3) for g, p in zip(GT, PRED))  # rows GT, cols pred; 255 ignored
    inter = np.diag(hist)
    union = hist.sum(0) + hist.sum(1) - inter
    iou = inter / union
    acc = inter / hist.sum(1)
    assert out["aAcc"] == pytest.approx(round(100 * inter.sum() / hist.sum(), 2))
    assert out["mIoU"] == pytest.approx(round(100 * iou.mean(), 2))
    assert out["mAcc"] == pytest.approx(round(100 * acc.mean(), 2))
    assert out["per_class_IoU"] == pytest.approx([round(100 * v, 2) for v in iou])


def test_paper_metric_skips_unscored_images():
    metric = PaperMetric(num_classes=3)
    metric.process({}, _samples(scored=(True, False)))
    out = metric.compute_metrics(metric.results)
    assert out == paper_scores(confusion_matrix(GT[0], PRED[0], 3))


def test_paper_metric_stores_sparse_per_image_entries():
    """Memory stays small (non-zero cells only), one entry per image; entries of several ranks sum."""
    a, b = PaperMetric(num_classes=3), PaperMetric(num_classes=3)
    for _ in range(5):
        a.process({}, _samples())
    b.process({}, _samples())
    assert len(a.results) == 10 and all(len(entry.cells) <= 9 for entry in a.results)
    hist = sum(confusion_matrix(g, p, 3) for g, p in zip(GT, PRED))
    assert a.compute_metrics(a.results + b.results) == paper_scores(6 * hist)


def test_paper_metric_per_image_counts_keep_skipped_images_as_entries():
    """A skipped image is an entry (distributed padding is dropped by position) but not a record."""
    metric = PaperMetric(num_classes=3)
    samples = _samples(scored=(False, True))
    for i, sample in enumerate(samples):
        sample["img_path"] = f"/data/JPEGImages/im{i}.jpg"
    metric.process({}, samples)
    assert len(metric.results) == 2
    metric.compute_metrics(metric.results)
    per_image = metric.per_image
    assert per_image.image_ids == ("im1",) and per_image.metric_definition == "paper_scores"
    np.testing.assert_array_equal(per_image.total(), confusion_matrix(GT[1], PRED[1], 3))


def test_iou_metric_per_image_counts_equal_mmseg_areas():
    """Diagonal, row and column sums of the stored matrices are mmseg's own per-image areas, including
    a pixel whose GT lies outside the classes (mmseg still counts its prediction)."""
    metric = IoUMetricPerClass(iou_metrics=["mIoU"], ignore_index=255)
    metric.dataset_meta = {"classes": ("a", "b", "c")}
    samples = _samples()
    samples[1]["gt_sem_seg"]["data"][0, 0, 0] = 7  # out of range, not ignored
    for i, sample in enumerate(samples):
        sample["img_path"] = f"im{i}.png"
    metric.process({}, samples)
    metric.compute_metrics(metric.results)
    per_image = metric.per_image
    assert per_image.side == 4 and per_image.image_ids == ("im0", "im1")
    inter, gt, pred = per_image.marginals()
    for i, (area_inter, _union, area_pred, area_gt) in enumerate(r[:4] for r in metric.results):
        np.testing.assert_array_equal(inter[i], area_inter.numpy())
        np.testing.assert_array_equal(gt[i], area_gt.numpy())
        np.testing.assert_array_equal(pred[i], area_pred.numpy())


def _random_samples(n: int, n_classes: int, shape=(37, 53), seed: int = 0) -> list[dict]:
    """Random GT / predictions with ignored pixels and labels outside the classes on both sides."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        gt = rng.integers(0, n_classes, shape)
        pred = rng.integers(0, n_classes, shape)
        gt[rng.random(shape) < 0.1] = 255
        gt[rng.random(shape) < 0.02] = n_classes + 3  # outside the classes, not ignored
        pred[rng.random(shape) < 0.02] = n_classes  # a prediction outside the classes
        if i == 1:
            gt[:] = 255  # an image with nothing scored
        samples.append(
            {
                "pred_sem_seg": {"data": torch.from_numpy(pred)[None]},
                "gt_sem_seg": {"data": torch.from_numpy(gt.astype(np.uint8))[None]},
                "img_path": f"im{i}.jpg",
            }
        )
    return samples


@pytest.mark.parametrize("n_classes", [2, 21, 150])
def test_iou_metric_areas_equal_mmseg_intersect_and_union(n_classes):
    """The areas read off the confusion cells are, bit for bit, mmseg's own per image, and so are the
    metrics mmseg's ``IoUMetric`` computes from them."""
    from mmseg.evaluation import IoUMetric

    classes = tuple(str(c) for c in range(n_classes))
    ours, theirs = IoUMetricPerClass(ignore_index=255), IoUMetric(ignore_index=255)
    ours.dataset_meta = theirs.dataset_meta = {"classes": classes}
    samples = _random_samples(4, n_classes)
    ours.process({}, samples)
    theirs.process({}, samples)
    assert len(ours.results) == len(theirs.results) == 4
    for mine, ref in zip(ours.results, theirs.results):
        for a, b in zip(mine[:4], ref):
            assert a.dtype == b.dtype == torch.float32
            assert torch.equal(a, b)
    summary = ours.compute_metrics(ours.results)
    assert {k: summary[k] for k in ("aAcc", "mIoU", "mAcc")} == theirs.compute_metrics(theirs.results)


def test_iou_metric_keeps_mmseg_process_where_mmseg_writes_predictions(tmp_path):
    """``output_dir`` (and ``format_only``): mmseg's own ``process`` runs, so its PNGs are written."""
    metric = IoUMetricPerClass(ignore_index=255, output_dir=str(tmp_path))
    metric.dataset_meta = {"classes": ("a", "b", "c")}
    samples = _random_samples(2, 3)
    metric.process({}, samples)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["im0.png", "im1.png"]
    assert len(metric.results) == 2 and all(len(r) == 5 for r in metric.results)


@pytest.mark.parametrize("gt_dtype", [np.uint8, np.int16, np.int64])
def test_confusion_counts_compiled_equal_numpy(gt_dtype):
    """The one-pass count equals the NumPy passes (ignored GT, labels outside the classes on both sides,
    negative predictions, any integer dtype); pixel counts must agree."""
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 24, (2, 31, 47)).astype(gt_dtype)
    gt[0, :3] = 255
    pred = rng.integers(-3, 26, (2, 31, 47))
    hist = confusion_counts(gt, pred, 22, 255)
    np.testing.assert_array_equal(hist, confusion_counts_numpy(gt, pred, 22, 255))
    assert hist.sum() == (gt != 255).sum() and hist.dtype == np.int64
    with pytest.raises(ValueError, match="GT has 2914 pixels, the prediction 2913"):
        confusion_counts(gt, pred.ravel()[:-1], 22, 255)
