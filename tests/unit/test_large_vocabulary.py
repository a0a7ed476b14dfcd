"""Reports at the vocabulary sizes users run (ADE-150, PC-459): per-class charts draw the k classes with the
largest differences and say how many were left out, the CSV lists every class, and files stay small."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from helpers.stats_records import vocabulary_matrices, write_run
from PIL import Image

from cliptrase.cli import report as report_cli
from cliptrase.reporting.analysis import StatsRequest, write_statistics
from cliptrase.reporting.class_view import MAX_CHART_CLASSES, chart_classes, chart_title
from cliptrase.utils.class_names import read_class_names

ROWS = ("clip | ViT-B-16 | standard", "cliptrase | ViT-B-16 | standard", "naclip | ViT-B-16 | standard")
VOCABULARIES = {"ade150": "ADE150.txt", "context459": "PC459.txt"}


@pytest.fixture(params=list(VOCABULARIES))
def experiment(request, tmp_path):
    column = request.param
    names = read_class_names("paper", VOCABULARIES[column])
    rng = np.random.default_rng(20)
    exp = tmp_path / "large"
    for i, row in enumerate(ROWS):
        matrices = vocabulary_matrices(rng, 40, len(names), per_image=12, skill=0.3 + 0.2 * i)
        write_run(exp, row, column, matrices, class_names=names)
    return exp, column, names


def test_class_charts_show_k_classes_and_the_csv_all(experiment):
    exp, column, names = experiment
    request = StatsRequest(baseline="clip", n_resamples=50)
    (analysis,) = write_statistics(exp, metric="mIoU", out_dir=exp, request=request)
    for comp in analysis.comparisons:
        diff = comp.per_class[column]
        shown = chart_classes(diff)
        defined = np.flatnonzero(~np.isnan(diff.diff))
        assert len(defined) > MAX_CHART_CLASSES and len(shown.order) == MAX_CHART_CLASSES
        assert shown.left_out == len(defined) - MAX_CHART_CLASSES and shown.n_classes == len(names)
        # the k largest |A - B|, drawn from the largest gain down
        threshold = np.sort(np.abs(diff.diff[defined]))[-MAX_CHART_CLASSES]
        assert np.all(np.abs(diff.diff[shown.order]) >= threshold)
        assert np.all(np.diff(diff.diff[shown.order]) <= 0)
        title = chart_title("t", shown)
        assert f"{MAX_CHART_CLASSES} of {len(defined)} classes" in title
        assert f"{shown.left_out} left out (all in the CSV)" in title
        stem = (
            exp
            / "compare"
            / f"{column}__{comp.a.split(' | ')[0]}_ViT-B-16_standard__vs__clip_ViT-B-16_standard"
        )
        with open(f"{stem}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert sorted(r["class"] for r in rows) == sorted(names)  # every class, drawn or not
        png = stem.with_suffix(".png").read_bytes()
        assert len(png) < 100_000, len(png)
        _, height = Image.open(io.BytesIO(png)).size
        assert height < 110 * (3.0 + 0.22 * MAX_CHART_CLASSES) + 200, height  # k rows tall, not one per class


def test_large_vocabulary_report_stays_small(experiment):
    exp, _, _ = experiment
    assert report_cli.main([str(exp), "--baseline", "clip", "--resamples", "50"]) == 0
    size = (exp / "report.html").stat().st_size
    # two inline per-class charts (base64) plus tables: well under 100 kB per chart
    assert size < 250_000, size
