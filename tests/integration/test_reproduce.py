"""``cliptrase reproduce`` end to end on CPU: loopback download -> prepare -> check -> evaluate -> table.

A miniature ``VOCtrainval_11-May-2012.tar`` (official layout, real JPEGs and palette PNGs) is served on
127.0.0.1; the golden tiny CLIP stands in for ViT-B/16 (``--weights``). The run must write the experiment's
table with the published row beside the measured one, and a second run must skip every step.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from helpers import golden
from helpers.loopback_http import ArchiveServer, guard_loopback, tar_bytes
from PIL import Image

from cliptrase.cli import reproduce
from cliptrase.cli.console import run_command
from cliptrase.datasets import download
from cliptrase.harness.identity import weights_digest
from cliptrase.reporting.published import PAPER_README, PUBLISHED, published_for_rows

pytestmark = pytest.mark.integration

VOC_TAR = "VOCtrainval_11-May-2012.tar"
VOC_ROOT = "VOCdevkit/VOC2012"


def _palette_png(labels: np.ndarray) -> bytes:
    """A VOC-style palette (mode P) PNG whose indices are ``labels``."""
    image = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
    image.putpalette([v for i in range(256) for v in (i, (i * 7) % 256, (i * 13) % 256)])
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


def voc_archive() -> bytes:
    """Three val images (labels with background, two classes and the 255 void ring) and one train image."""
    members = {}
    stems = ["2007_000032", "2007_000033", "2007_000042"]
    for i, stem in enumerate([*stems, "2007_000039"]):
        labels = np.zeros((48, 64), np.uint8)
        labels[10:30, 8:40] = 1 + 7 * i
        labels[[0, -1], :] = 255  # the void ring
        labels[:, [0, -1]] = 255
        members[f"{VOC_ROOT}/JPEGImages/{stem}.jpg"] = _jpeg(i)
        members[f"{VOC_ROOT}/SegmentationClass/{stem}.png"] = _palette_png(labels)
    members[f"{VOC_ROOT}/ImageSets/Segmentation/val.txt"] = ("\n".join(stems) + "\n").encode()
    members[f"{VOC_ROOT}/ImageSets/Segmentation/train.txt"] = b"2007_000039\n"
    return tar_bytes(members)


@pytest.fixture
def golden_weights() -> Path:
    return golden.golden_weights()


@pytest.fixture
def voc_server(monkeypatch):
    """The loopback server holding the miniature VOC tar, registered with its own size and md5."""
    data = voc_archive()
    srv = ArchiveServer().start()
    srv.add(VOC_TAR, data)
    guard_loopback(monkeypatch)
    monkeypatch.setenv(download.DOWNLOAD_BASE_ENV, srv.base_url)
    monkeypatch.delenv(download.FREE_BYTES_ENV, raising=False)
    source = download.SOURCES["voc2012"]
    archive = dataclasses.replace(
        source.archives[0],
        size=len(data),
        md5=hashlib.md5(data).hexdigest(),
        approx_bytes=len(data),
        extracted_bytes=len(data),
    )
    monkeypatch.setitem(download.SOURCES, "voc2012", dataclasses.replace(source, archives=(archive,)))
    yield srv
    srv.stop()


def cli(argv: list[str]) -> int:
    """``cliptrase reproduce ...`` through its own parser (main.py registers the same ``register``)."""
    parser = argparse.ArgumentParser(prog="cliptrase")
    reproduce.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_command(args)


def test_reproduce_paper_voc20_end_to_end_then_skips_everything(voc_server, golden_weights, tmp_path, caplog):
    caplog.set_level("INFO")
    root, results = tmp_path / "data root", tmp_path / "results, 1"  # Hydra overrides must quote these
    argv = ["reproduce", "paper", "--datasets", "voc20", "--max-images", "2", "--device", "cpu"]
    argv += ["--workers", "1", "--subset"]  # the mirror holds 3 of the 1,449 val images
    argv += ["--root", str(root), "--results", str(results), "--weights", str(golden_weights)]
    assert cli(argv) == 0
    assert [r.range for r in voc_server.requests_for(VOC_TAR)] == [None]
    assert (root / VOC_ROOT / "ImageSets/Segmentation/val.txt").is_file()  # prepared copy
    experiment = results / "paper_table"
    table = (experiment / "table.md").read_text()
    row = f"cliptrase \\| weights_file:{weights_digest(golden_weights)} \\| paper224 \\| max_images=2"
    lines = {
        line.split(" | ")[0].removeprefix("| "): line for line in table.splitlines() if line.startswith("| ")
    }
    assert f"{row} (published)" in lines and f"{row} Δ vs published" in lines and row in lines
    assert "80.95" in lines[f"{row} (published)"] and "81.20" in table
    summary = (experiment / "reproduce_summary.md").read_text()
    assert "| voc20 | paper224 | cliptrase |" in summary and "| 80.95 |" in summary and "| 81.20 |" in summary
    assert "3 images listed, expected 1449" in summary  # the mirror is a subset: said plainly
    steps = next(line for line in summary.splitlines() if line.startswith("- **voc20** (ready)"))
    for step in ("download: done, 30", "prepare: done", "check: passed", "paper224/cliptrase evaluated"):
        assert step in steps, steps
    assert "published numbers are for OpenAI CLIP ViT-B/16" in summary

    caplog.clear()
    assert cli(argv) == 0
    assert len(voc_server.requests) == 1  # nothing fetched again
    summary = (experiment / "reproduce_summary.md").read_text()
    assert "ready (checked earlier" in summary
    compared = [line for line in summary.splitlines() if line.startswith("| voc20 | paper")]
    assert len(compared) == 2 and all(
        line.endswith("| complete result found, skipped |") for line in compared
    )


def test_reproduce_bad_input_is_one_line(voc_server, golden_weights, tmp_path, caplog, monkeypatch):
    base = ["reproduce", "paper", "--root", str(tmp_path / "data"), "--results", str(tmp_path / "res")]
    assert cli([*base, "--datasets", "voc2O"]) == 2
    assert "unknown dataset 'voc2O'; valid:" in caplog.records[-1].getMessage()
    assert cli([*base, "--datasets", "voc20", "--weights", str(tmp_path / "missing.pt")]) == 2
    assert "weights file" in caplog.records[-1].getMessage()
    assert cli([*base, "--datasets", "voc20", "--methods", "nope"]) == 2
    assert "unknown method 'nope'" in caplog.records[-1].getMessage()
    monkeypatch.setenv(download.FREE_BYTES_ENV, "10")
    assert cli([*base, "--datasets", "voc20", "--weights", str(golden_weights)]) == 2
    assert "not enough disk space" in caplog.records[-1].getMessage()
    assert voc_server.requests == []  # checked before anything was fetched
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli(["reproduce", "paper", "--datasets", "voc20", "--root", str(blocker / "data")]) == 2
    assert "is not writable" in caplog.records[-1].getMessage()
    assert all("\n" not in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_reproduce_waits_for_login_only_sets(voc_server, tmp_path, caplog):
    caplog.set_level("INFO")
    argv = ["reproduce", "standard", "--datasets", "cityscapes"]
    argv += ["--root", str(tmp_path / "data"), "--results", str(tmp_path / "res")]
    assert cli(argv) == 1
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "gtFine_trainvaltest.zip" in text and "waiting for a manual download" in text
    assert voc_server.requests == []


def test_published_numbers_key_the_tables():
    assert PUBLISHED["cliptrase | vit_b16_openai | paper224"]["voc20"] == 80.95
    assert PUBLISHED["cliptrase | vit_b16_openai | paper336"]["ade847"] == 5.89
    assert PUBLISHED["sclip | vit_b16_openai | sclip"]["cityscapes"] == 32.34  # on its own preset
    for numbers in PAPER_README.values():
        assert len(numbers) == 9
        assert round(sum(numbers.values()) / 9, 2) in (32.66, 33.53)  # docs/method.md §9.1 averages
    labels = [
        "cliptrase | vit_b16_openai | paper224",
        "cliptrase | vit_l14_openai | paper224",  # another backbone: not comparable
        "cliptrase | vit_b16_openai | paper224 | eps=0.5",  # an ablation
        "maskclip | vit_b16_openai | paper224",  # nothing published
        "cliptrase | weights_file:tiny | paper336",
        "cliptrase | vit_b16_openai | paper336 | max_images=50",  # a smoke run of a published setting
    ]
    assert set(published_for_rows(labels)) == {labels[0], labels[5]}
    assert set(published_for_rows(labels, models={"vit_b16_openai", "weights_file:tiny"})) == {
        labels[0],
        labels[4],
        labels[5],
    }
