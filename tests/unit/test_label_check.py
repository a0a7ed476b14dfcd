"""``CheckLabels``: the value check every label map passes right after loading (no cliptrase-eval here)."""

from __future__ import annotations

import numpy as np
import pytest

from cliptrase.datasets.label_check import (
    CheckLabels,
    InvalidLabelError,
    invalid_label_counts,
    with_label_check,
)


def test_invalid_label_counts_bincount():
    labels = np.array([[0, 1, 20, 255], [77, 77, 21, 255]], dtype=np.int64)
    assert invalid_label_counts(labels, 21, [255]) == {21: 1, 77: 2}
    assert invalid_label_counts(labels, 256, []) == {}
    assert invalid_label_counts(np.array([-1, 0, 3]), 2, []) == {-1: 1, 3: 1}
    assert invalid_label_counts(np.zeros((0, 4), dtype=np.int64), 1, []) == {}


def _sample(labels: np.ndarray, *, reduce: bool) -> dict:
    return {"gt_seg_map": labels.astype(np.int64), "seg_map_path": "/d/a.png", "reduce_zero_label": reduce}


def test_raw_values_checked_against_data_check_valid_set():
    check = CheckLabels(raw_num_classes=21, ignore_index=255, dataset="voc21")
    ok = _sample(np.array([[0, 20, 255]]), reduce=False)
    assert check(ok)["invalid_label_pixels"] == 0
    with pytest.raises(InvalidLabelError) as err:
        check(_sample(np.array([[0, 77, 77, 254]]), reduce=False))
    message = str(err.value)
    assert "/d/a.png" in message and "77 (2 px)" in message and "254 (1 px)" in message
    assert "cliptrase data check voc21" in message and "allow_invalid_labels=true" in message


def test_reduced_maps_report_the_values_on_disk():
    """VOC20 reads the VOC21 files with reduce_zero_label: raw 77 arrives as 76 but is named as 77."""
    check = CheckLabels(raw_num_classes=21, ignore_index=255, dataset="voc20")
    raw = np.array([[0, 1, 20, 255, 77]])
    reduced = raw - 1
    reduced[(raw == 0) | (raw == 255)] = 255
    with pytest.raises(InvalidLabelError, match=r"values 77 \(1 px\)"):
        check(_sample(reduced, reduce=True))


def test_allow_counts_instead_of_failing():
    check = CheckLabels(raw_num_classes=5, ignore_index=255, dataset="demo", allow=True)
    out = check(_sample(np.array([[0, 9, 9, 4]]), reduce=False))
    assert out["invalid_label_pixels"] == 2
    assert out["gt_seg_map"].tolist() == [[0, 9, 9, 4]]  # the map itself is never changed


def test_with_label_check_inserts_after_the_label_loader():
    from cliptrase.datasets.voc import VOC21Dataset

    steps = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotationsU16"),
        dict(type="PackSegInputs", meta_keys=("img_path",)),
    ]
    out = with_label_check(steps, VOC21Dataset, dataset="voc21", allow=True)
    types = [s["type"] for s in out]
    assert types == ["LoadImageFromFile", "LoadAnnotationsU16", "CheckLabels", "PackSegInputs"]
    assert out[2] == dict(
        type="CheckLabels", raw_num_classes=21, ignore_index=255, dataset="voc21", allow=True
    )
    assert out[3]["meta_keys"] == ("img_path", "invalid_label_pixels")
    assert steps[2]["meta_keys"] == ("img_path",)  # the caller's list is not edited
