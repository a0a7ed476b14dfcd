"""``cliptrase data check``: a good miniature copy passes; a broken one names each problem and fails."""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pytest
from helpers.miniatures import label_with, write_label
from PIL import Image

from cliptrase.cli.console import run_command
from cliptrase.cli.data import EXIT_BAD_INPUT, EXIT_OK, EXIT_PROBLEMS, register
from cliptrase.datasets.prepare.check import check_dataset


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cliptrase")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *argv])
    return run_command(args)


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO)


@pytest.mark.parametrize("name", ["voc21", "context459", "coco_object", "cityscapes", "ade847"])
def test_good_copy_passes(miniature, name, caplog):
    data_root, raw = miniature(name)
    assert check_dataset(name, data_root, expected=len(raw), workers=1).ok
    assert (
        run_cli("check", name, "--root", str(data_root), "--expected", str(len(raw)), "--workers", "1")
        == EXIT_OK
    )
    assert f"{name}: OK, {len(raw)} images" in caplog.text


def test_broken_copy_names_each_problem(miniature, caplog):
    data_root, _ = miniature("voc21")
    voc = data_root / "VOCdevkit/VOC2012"
    (voc / "SegmentationClass/2007_000033.png").unlink()  # a missing label
    write_label(
        voc / "SegmentationClass/2007_000042.png", label_with([0, 21, 100, 255]), palette=True
    )  # stray
    rgb = np.zeros((10, 12, 3), np.uint8)
    Image.fromarray(rgb).save(voc / "SegmentationClass/2007_000032.png")  # a colour PNG: wrong dtype/shape
    write_label(voc / "SegmentationClass/2009_999999.png", label_with([1]), palette=True)  # no image

    report = check_dataset("voc21", data_root, workers=1)
    kinds = {p.kind: p for p in report.problems}
    assert set(kinds) == {"count", "missing-label", "values", "dtype", "orphan-label"}
    assert "2007_000033.png" in kinds["missing-label"].message
    assert "values [21, 100]" in kinds["values"].message and "0..20 and 255" in kinds["values"].message
    assert "2007_000032.png (uint8, shape with 3 dims)" in kinds["dtype"].message
    assert "2009_999999.png" in kinds["orphan-label"].message
    assert all("cliptrase data prepare voc21 --raw" in p.fix for p in report.problems)

    assert run_cli("check", "voc21", "--root", str(data_root), "--workers", "1") == EXIT_PROBLEMS
    assert "voc21: 5 problem(s)" in caplog.text and "[values]" in caplog.text


def test_wrong_16_bit_dtype_and_values(miniature):
    data_root, _ = miniature("ade847")
    labels = data_root / "ADE20K_2021_17_01/annotations_detectron2/validation"
    Image.fromarray(label_with([1, 2])).save(labels / "ADE_val_00000001.tif")  # 8-bit: wrapped by someone
    write_label(labels / "ADE_val_00000002.tif", label_with([847, 65535], np.uint16))
    kinds = {p.kind: p for p in check_dataset("ade847", data_root, expected=2, workers=1).problems}
    assert set(kinds) == {"dtype", "values"}
    assert "not single-channel uint16" in kinds["dtype"].message and "values [847]" in kinds["values"].message


def test_missing_root_split_and_unreadable_image(miniature, tmp_path):
    report = check_dataset("ade150", tmp_path / "nowhere")
    assert [p.kind for p in report.problems] == ["root"]
    assert "cliptrase data prepare ade150" in report.problems[0].fix

    data_root, _ = miniature("context60")
    (data_root / "VOCdevkit/VOC2010/ImageSets/SegmentationContext/val.txt").write_text("")
    assert [p.kind for p in check_dataset("context60", data_root).problems] == ["split"]

    data_root, _ = miniature("coco_stuff171")
    (data_root / "coco_stuff164k/images/val2017/000000000139.jpg").write_bytes(b"garbage")
    kinds = {p.kind: p for p in check_dataset("coco_stuff171", data_root, expected=2, workers=1).problems}
    assert set(kinds) == {"unreadable"} and "000000000139.jpg" in kinds["unreadable"].message


def test_cli_bad_input_is_one_line(tmp_path, caplog):
    assert run_cli("check", "voc2012", "--root", str(tmp_path)) == EXIT_BAD_INPUT
    assert "unknown dataset 'voc2012'; valid:" in caplog.text
    assert run_cli("check", "--root", str(tmp_path)) == EXIT_BAD_INPUT
    assert (
        run_cli("prepare", "voc21", "--raw", str(tmp_path / "none"), "--out", str(tmp_path)) == EXIT_BAD_INPUT
    )
    assert "--raw directory" in caplog.text
    with pytest.raises(SystemExit):
        run_cli("prepare", "voc2012", "--raw", str(tmp_path), "--out", str(tmp_path))


def test_check_all_fails_when_roots_are_missing(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("CLIPTRASE_CACHE", str(tmp_path / "cache"))
    assert run_cli("check", "--all", "--root", str(tmp_path), "--workers", "1") == EXIT_PROBLEMS
    assert "ade150: 1 problem(s)" in caplog.text and "voc21: 1 problem(s)" in caplog.text


def test_list(tmp_path, caplog):
    assert run_cli("list", "--root", str(tmp_path)) == EXIT_OK
    assert "voc21" in caplog.text and "[missing]" in caplog.text
