"""``cliptrase-report`` at the size users run: 8 benchmarks (ADE-847 and PC-459 vocabularies included) x 8
methods, 16 saved images per run at the benchmarks' own image sizes, synthetic data.

Asserts the page's size bound (~20 MB); render and build times are printed, not asserted (speed is measured
by benchmark scripts, not timed assertions: these numbers depend on the machine and its load).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.browser import CHROMIUM, chromium_dom
from helpers.saved_predictions import IGNORE, prediction, save_run, scene
from helpers.stats_records import write_run

from cliptrase.cli import report as report_cli
from cliptrase.datasets.spec import get_dataset_class

pytestmark = pytest.mark.slow

DATASETS = {  # column: image size (H, W) as the benchmark's images come
    "voc21": (375, 500),
    "context60": (375, 500),
    "coco_object": (480, 640),
    "coco_stuff171": (480, 640),
    "cityscapes": (1024, 2048),
    "ade150": (512, 683),
    "context459": (375, 500),
    "ade847": (512, 683),
}
METHODS = [f"method{m} | ViT-B-16 | standard" for m in range(8)]
N_SAVED = 16
MAX_REPORT_BYTES = 20 * 10**6
_SCENE = {"bands": 8, "noise": 12.0}


def _matrices(names: list[str], hw: tuple[int, int], method: int) -> list[np.ndarray]:
    """Per-image confusion matrices of the synthetic predictions (GT ignore left out, as mmseg does)."""
    c = len(names)
    out = []
    for i in range(N_SAVED):
        _, gt = scene(i, hw, c, **_SCENE)
        pred = prediction(gt, method, c)
        keep = gt != IGNORE
        out.append(np.bincount(gt[keep] * c + pred[keep], minlength=c * c).reshape(c, c))
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    exp = tmp_path_factory.mktemp("scale") / "sweep"
    stems = [f"{i:06d}" for i in range(N_SAVED)]
    for column, hw in DATASETS.items():
        names = list(get_dataset_class(column).METAINFO["classes"])
        for m, row in enumerate(METHODS):
            record = write_run(exp, row, column, _matrices(names, hw, m), ids=stems, class_names=names)
            save_run(exp, record, stems, m, hw, **_SCENE)
    return exp


def test_full_sweep_report_size_and_render_time(sweep, tmp_path):
    start = time.perf_counter()
    assert report_cli.main([str(sweep), "--resamples", "200"]) == 0
    build_s = time.perf_counter() - start
    page = sweep / "report.html"
    size = page.stat().st_size
    figure = {fmt: (sweep / f"qualitative.{fmt}").stat().st_size for fmt in ("png", "pdf")}
    print(  # the measurement is this test's output (pytest -s)
        f"\nreport.html {size / 1e6:.2f} MB, qualitative.png {figure['png'] / 1e6:.2f} MB, "
        f"qualitative.pdf {figure['pdf'] / 1e6:.2f} MB, built in {build_s:.1f} s"
    )
    assert size < MAX_REPORT_BYTES
    text = page.read_text(encoding="utf-8")
    assert text.count('<table class="grid">') == len(DATASETS)
    if not CHROMIUM.is_file():
        pytest.skip(f"headless Chromium not installed at {CHROMIUM}: render time not measured")
    probe = (
        "<script>window.addEventListener('load',()=>{const i=[...document.images];"
        "document.body.setAttribute('data-load-ms',Math.round(performance.now()));"
        "document.body.setAttribute('data-loaded',i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length)"
        "});</script>"
    )
    copy = tmp_path / "probe.html"
    copy.write_text(text.replace("</body>", probe + "</body>"), encoding="utf-8")
    start = time.perf_counter()
    dom = chromium_dom(copy, tmp_path / "profile", budget_ms=None, timeout_s=300)
    wall_s = time.perf_counter() - start
    loaded = re.search(r'data-loaded="(\d+)/(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2)
    load_ms = int(re.search(r'data-load-ms="(\d+)"', dom).group(1))
    print(
        f"Chromium: page loaded (all {loaded.group(2)} images decoded) {load_ms / 1000:.2f} s after "
        f"navigation; {wall_s:.1f} s wall including browser start"
    )
