"""Paper-protocol pieces: metric, GT handling, vocabularies, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cliptrase.engine.paper_metric import confusion_matrix, paper_scores
from cliptrase.protocols.paper import (
    PAPER_KEYS,
    dbscan_settings,
    gt_to_image,
    is_scored,
    map_gt,
    paper_dataset,
    preprocess_gt,
    preprocess_image,
)


def test_paper_scores_by_hand():
    # 3 classes; class 2 absent from GT but predicted once.
    gt = np.array([0, 0, 0, 1, 1, 255, -1, 7])
    pred = np.array([0, 0, 1, 1, 2, 0, 0, 0])
    hist = confusion_matrix(gt, pred, 3)
    assert hist.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 0]]
    s = paper_scores(hist)
    iou0 = 2 / (3 + 2 - 2 + 0.01)
    iou1 = 1 / (2 + 2 - 1 + 0.01)
    assert s["pAcc"] == round(3 / 5 * 100, 2)
    assert s["mAcc"] == round((2 / 3.01 + 1 / 2.01 + 0) / 3 * 100, 2)  # absent class counts 0
    assert s["mIoU"] == round((iou0 + iou1) / 2 * 100, 2)  # only classes present in the GT
    assert s["fwIoU"] == round((3 / 5 * iou0 + 2 / 5 * iou1) * 100, 2)
    assert np.isnan(s["per_class_IoU"][2])


def test_confusion_rejects_out_of_range_predictions():
    with pytest.raises(ValueError, match=r"prediction labels must lie in 0\.\.2"):
        confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3)


def test_vocabulary_quirks_kept():
    voc21 = paper_dataset("VOC21")
    assert len(voc21.background_names) == 33
    assert voc21.background_names.count("bed") == 2 and "beachhill" in voc21.background_names
    assert voc21.n_class_scored == 21 and voc21.prompts[20] == "background"
    assert paper_dataset("ADE150").class_names[7] == "bed "
    assert len(paper_dataset("ADEfull").class_names) == 847
    assert paper_dataset("COCO80_val").n_class_scored == 81
    assert len(paper_dataset("COCO80_val").background_names) == 107
    assert paper_dataset("PC60").background_names == ("background",)
    assert paper_dataset("VOC20").cls_product and not paper_dataset("VOC21").cls_product
    assert {k: len(paper_dataset(k).class_names) for k in PAPER_KEYS} == {
        "VOC20": 20, "VOC21": 20, "PC59": 59, "PC60": 59, "PC459": 459,
        "COCO80_val": 80, "COCO171_val": 171, "ADE150": 150, "ADEfull": 847,
    }  # fmt: skip
    with pytest.raises(KeyError, match="valid: VOC20"):
        paper_dataset("VOC19")


def test_dbscan_settings():
    assert dbscan_settings(224) == (0.7, 3)
    assert dbscan_settings(336) == (1.1, 7)
    with pytest.raises(ValueError, match=r"set method\.eps"):
        dbscan_settings(448)
    assert dbscan_settings(224, 16) == (0.7, 3)  # keyed by S, as the authors' script (ViT-L/14 at 224)
    assert dbscan_settings(448, 28) == (1.5, 11)  # the documented linear rule in the grid side
    assert dbscan_settings(560, 35)[1] == 15


def test_uint16_gt_keeps_values_and_wraps_ignore():
    gt = np.full((40, 60), 65535, dtype=np.uint16)
    gt[10:30, 10:50] = 846
    gt[:5] = 300
    crop = preprocess_gt(gt_to_image(gt), 20)
    assert crop.dtype == np.int16 and crop.shape == (20, 20)
    assert set(np.unique(crop)) == {-1, 300, 846}  # 65535 -> -1 as the script's int16 cast
    assert is_scored(crop)
    hist = confusion_matrix(crop, np.zeros_like(crop), 847)
    assert hist.sum() == (crop >= 0).sum()


def test_skip_rule_and_background_mapping():
    only_void = np.full((4, 4), 255, dtype=np.int16)
    assert not is_scored(only_void)
    assert is_scored(np.array([[-1]], dtype=np.int16))  # quirk 11.1: never skipped
    voc21 = paper_dataset("VOC21")
    mapped = map_gt(np.array([[0, 255, 5]], dtype=np.int16), voc21)
    assert mapped.tolist() == [[0, 20, 5]]
    assert map_gt(only_void, paper_dataset("VOC20")) is only_void


def test_preprocess_image_resize_crop():
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 500, 3), dtype=np.uint8))
    x = preprocess_image(im, 224, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    gt = preprocess_gt(gt_to_image(np.zeros((300, 500), np.uint8)), 336)
    assert gt.shape == (336, 336)
