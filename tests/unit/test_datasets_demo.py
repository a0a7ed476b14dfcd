"""The built-in demo benchmark: deterministic generation, VOC layout, loadable through its config."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cliptrase.datasets import build_dataset, ensure_demo_dataset, load_dataset_config
from cliptrase.datasets.demo import DEMO_SIZES_HW, default_demo_root


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_deterministic(tmp_path):
    first = ensure_demo_dataset(tmp_path / "a")
    second = ensure_demo_dataset(tmp_path / "b")
    assert _tree(first) == _tree(second)
    assert ensure_demo_dataset(first) == first  # cached: no regeneration


def test_layout_sizes_and_labels(tmp_path):
    root = ensure_demo_dataset(tmp_path / "demo")
    stems = (root / "ImageSets/Segmentation/val.txt").read_text().split()
    assert len(stems) == len(DEMO_SIZES_HW) == 6
    for stem, (height, width) in zip(stems, DEMO_SIZES_HW):
        with Image.open(root / "SegmentationClass" / f"{stem}.png") as label:
            assert label.mode == "P" and label.size == (width, height)
            values = set(np.unique(np.asarray(label)).tolist())
        assert values <= {0, 1, 2, 3, 4, 255} and {0, 3, 255} <= values
        with Image.open(root / "JPEGImages" / f"{stem}.jpg") as image:
            assert image.size == (width, height)
    assert any(h != w for h, w in DEMO_SIZES_HW)


def test_builds_from_its_config_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPTRASE_CACHE", str(tmp_path / "cache"))
    cfg = load_dataset_config("demo")
    assert cfg.data_root is None
    dataset = build_dataset(cfg)
    assert len(dataset) == 6 and default_demo_root() == tmp_path / "cache" / "demo"
    sample = dataset[1]
    assert tuple(sample["inputs"].shape) == (3, *DEMO_SIZES_HW[1])
    assert dataset.metainfo["classes"] == ("sky", "grass", "road", "ball", "box")


def test_refuses_to_overwrite_a_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not a cliptrase demo dataset"):
        ensure_demo_dataset(tmp_path / "mine")
