"""Invalid labels are never scored silently; sweeps survive a bad cell.

Run as a user would: ``cliptrase-eval`` in a subprocess on a VOC21 copy with the tiny CLIP.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.workspace import VOC_SUBDIR, Result, Workspace, default_labels, eval_args, label_map, write_voc
from PIL import Image

pytestmark = pytest.mark.integration


def test_label_outside_the_classes_fails_naming_file_and_value(ws: Workspace):
    labels = default_labels()
    labels["2007_000033"] = label_map([20, 77])
    write_voc(ws.data, labels)
    bad = ws.data / VOC_SUBDIR / "SegmentationClass" / "2007_000033.png"

    strict = ws.eval("num_workers=2")  # the default loader: the error crosses a worker process
    strict.assert_user_error(str(bad), "77 (", "cliptrase data check voc21", "allow_invalid_labels=true")
    assert not ws.records()

    allowed = ws.eval("allow_invalid_labels=true")
    allowed.assert_ok()
    (path,) = ws.records()
    record = json.loads(path.read_text())
    assert record["provenance"]["invalid_label_pixels"] == 11 * 32  # the 77 band minus the 255 border row
    assert record["provenance"]["invalid_label_images"] == 1
    table = (ws.results / "default" / "table.md").read_text()
    assert "†" in table and "allow_invalid_labels=true" in table


def _sweep(ws: Workspace) -> Result:
    sweep = ["dataset=voc21,voc20,context59", "experiment_name=sweep", "max_images=2"]
    return ws.run("cliptrase-eval", "-m", *eval_args(*sweep))


def test_sweep_records_failed_cells_runs_the_others_and_retries_only_those(ws: Workspace, voc: Path):
    """voc21 and voc20 read the VOC copy; context59 has no data: one failed cell of three."""
    first = _sweep(ws)
    first.assert_user_error("1 of 3 cells failed", "dataset=context59", "VOC2010")
    done = ws.records("sweep")
    assert len(done) == 2
    (failed,) = (ws.results / "sweep").glob("*/failed.json")
    assert "context59" in failed.parent.name and "VOC2010" in json.loads(failed.read_text())["error"]
    table = (ws.results / "sweep" / "table.md").read_text()
    assert "| failed |" in table, table
    runs = [p for p in (ws.results / "sweep").iterdir() if not p.name.startswith(".") and p.is_dir()]
    assert all(any(p.iterdir()) for p in runs)  # no empty run folder

    kept = {p: p.stat().st_mtime_ns for p in done}
    write_context59(ws.data / "VOCdevkit" / "VOC2010")
    second = _sweep(ws)
    second.assert_ok()
    assert {p: p.stat().st_mtime_ns for p in done} == kept  # complete cells are not recomputed
    assert second.output.count("skip ") == 2
    assert len(ws.records("sweep")) == 3
    assert not list((ws.results / "sweep").glob("*/failed.json"))
    assert "failed" not in (ws.results / "sweep" / "table.md").read_text()


def write_context59(root: Path) -> None:
    """A 2-image Pascal Context copy (59 classes, 0 = ignored) under ``root`` (``VOCdevkit/VOC2010``)."""
    stems = ["2008_000002", "2008_000080"]
    for i, stem in enumerate(stems):
        pixels = np.random.default_rng(i).integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        (root / "SegmentationClassContext").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{stem}.jpg")
        Image.fromarray(label_map([0, 1, 59])).save(root / "SegmentationClassContext" / f"{stem}.png")
    split = root / "ImageSets" / "SegmentationContext" / "val.txt"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text("\n".join(stems) + "\n")
