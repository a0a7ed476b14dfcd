"""The one palette (:mod:`cliptrase.utils.colours`) and the one prediction writer
(:mod:`cliptrase.inference.prediction_files`) shared by ``cliptrase predict`` and ``save_predictions``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cliptrase.datasets.ade import ADE847Dataset
from cliptrase.datasets.voc import PascalVOCDataset
from cliptrase.inference.overlay import colour_map
from cliptrase.inference.prediction_files import (
    DISPLAY_SIDE,
    display_size,
    label_image,
    read_labels,
    write_prediction,
)
from cliptrase.reporting.qualitative import dataset_colours
from cliptrase.utils.colours import IGNORE_COLOUR, class_colours, distinct_colours


def test_distinct_colours_are_deterministic_unique_and_never_the_ignore_colour():
    colours = distinct_colours(847)
    assert np.array_equal(colours, distinct_colours(847)) and colours.dtype == np.uint8
    assert len(np.unique(colours, axis=0)) == 847
    to_white = np.abs(colours.astype(int) - np.array(IGNORE_COLOUR)).sum(axis=1)
    assert to_white.min() > 60
    neighbours = np.abs(np.diff(colours[:50].astype(int), axis=0)).sum(axis=1)
    assert neighbours.min() > 60  # consecutive classes clearly apart
    assert np.array_equal(ADE847Dataset.METAINFO["palette"], colours.tolist())  # one generator


def test_class_colours_follow_the_dataset_palette_by_name_then_by_place():
    meta = PascalVOCDataset.METAINFO
    standard = ["background", *meta["classes"][1:-1], "television monitor"]
    paper = [*meta["classes"][1:-1], "tv", "background"]  # the authors' order: background last
    a = class_colours(standard, meta["classes"], meta["palette"])
    b = class_colours(paper, meta["classes"], meta["palette"])
    assert np.array_equal(a, np.asarray(meta["palette"], np.uint8))
    assert np.array_equal(b[-1], a[0]) and np.array_equal(b[:-1], a[1:])  # tv takes tvmonitor's colour
    assert np.array_equal(class_colours(["x", "y"]), distinct_colours(2))  # no reference: the generator
    assert np.array_equal(dataset_colours("voc21", paper), b)
    assert np.array_equal(dataset_colours("not-a-dataset", paper), distinct_colours(len(paper)))


def test_colour_map_draws_out_of_range_labels_as_ignore():
    colours = np.array([[10, 20, 30], [40, 50, 60]], np.uint8)
    out = np.asarray(colour_map(np.array([[0, 1, 255, -1]]), colours))
    assert out.tolist() == [[[10, 20, 30], [40, 50, 60], list(IGNORE_COLOUR), list(IGNORE_COLOUR)]]


@pytest.mark.parametrize(
    ("n_classes", "mode", "ignore"), [(21, "L", 255), (255, "L", 255), (256, "I;16", 65535)]
)
def test_label_pngs_are_8_or_16_bit_with_one_ignore_code(tmp_path, n_classes, mode, ignore):
    labels = np.array([[0, n_classes - 1], [n_classes, 65535]])
    image = label_image(labels, n_classes)
    image.save(tmp_path / "l.png")
    with Image.open(tmp_path / "l.png") as im:
        assert im.mode == mode
    assert read_labels(tmp_path / "l.png").tolist() == [[0, n_classes - 1], [ignore, ignore]]


def test_writer_stores_labels_at_full_size_and_grid_inputs_at_display_size(tmp_path):
    h, w = 480, 640
    labels = (np.arange(h * w).reshape(h, w) // 7) % 300
    gt = labels.copy()
    gt[:, :5] = 65535  # an ignore code of a 16-bit dataset
    image = Image.fromarray(np.full((h // 2, w // 2, 3), 90, np.uint8))  # the input may be any size
    names = [f"c{i}" for i in range(300)]
    saved = write_prediction(tmp_path, "x", labels, names, image=image, gt=gt, grid_inputs=True)
    assert saved.overlay is None and read_labels(saved.labels).tolist() == labels.tolist()
    dh, dw = display_size((h, w))
    assert (dh, dw) == (240, DISPLAY_SIDE)
    with Image.open(saved.image) as im:
        assert im.size == (dw, dh) and im.format == "JPEG"
    small = read_labels(saved.gt)
    assert small.shape == (dh, dw) and set(np.unique(small)) <= set(np.unique(gt))  # nearest: no new labels
    assert small[:, 0].tolist() == [65535] * dh


def test_predict_overlay_goes_through_the_writer(tmp_path):
    image = Image.fromarray(np.zeros((8, 10, 3), np.uint8))
    saved = write_prediction(tmp_path, "a", np.zeros((8, 10), int), ["sky"], image=image, overlay=True)
    assert saved.overlay is not None and saved.image is None and saved.gt is None
    with Image.open(saved.overlay) as im:
        assert im.width > 10  # the image plus its legend
        blended = np.asarray(im.convert("RGB"))[:8, :10].astype(int)
    assert np.abs(blended - distinct_colours(1)[0] // 2).max() <= 1  # half the class colour on black


def test_predict_path_does_not_import_mmengine():
    code = (
        "import sys; import cliptrase.cli.predict, cliptrase.inference.prediction_files; "
        "print('mmengine' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
