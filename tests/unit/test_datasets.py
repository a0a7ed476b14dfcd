"""The ten benchmarks built through their Hydra configs on miniature copies in the official layouts."""

from __future__ import annotations

import importlib.util
import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.miniatures import WRITERS
from hydra import compose, initialize_config_dir
from mmseg.datasets import PascalVOCDataset
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.evaluation import IoUMetric
from omegaconf import DictConfig, OmegaConf

from cliptrase.datasets import DATASET_CLASSES, LoadAnnotationsU16, build_dataset, load_dataset_config
from cliptrase.datasets.base import reduce_zero_label
from cliptrase.datasets.config_files import dataset_config_dir, list_dataset_configs
from cliptrase.registry import DATASETS, TRANSFORMS

BENCHMARKS = sorted(WRITERS)
REPO = Path(__file__).resolve().parents[2]
U16_IGNORE = 65535


def expected_labels(name: str, raw: np.ndarray) -> np.ndarray:
    cls = DATASET_CLASSES[name]
    labels = raw.astype(np.int64)
    return reduce_zero_label(labels) if cls.REDUCE_ZERO_LABEL else labels


def compose_dataset(name: str, data_root: Path) -> DictConfig:
    """The ``dataset`` node as Hydra composes it: this group option plus the ``paths`` group."""
    overrides = [f"+dataset={name}", "+paths=default", f"paths.data_root={data_root}"]
    with initialize_config_dir(config_dir=str(dataset_config_dir().parent), version_base=None):
        cfg = compose(config_name=None, overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg.dataset


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_loads_through_its_config(name, miniature):
    data_root, raw = miniature(name)
    cfg = compose_dataset(name, data_root)
    assert cfg == load_dataset_config(name, data_root)
    dataset = build_dataset(cfg)

    assert len(dataset) == len(raw)
    assert len(dataset.metainfo["classes"]) == cfg.num_classes
    assert dataset.metainfo["has_background"] == cfg.has_background
    for index, stem in enumerate(sorted(raw)):
        info = dataset.get_data_info(index)
        image_stem = Path(info["img_path"]).name[: -len(dataset.img_suffix)]
        label_stem = Path(info["seg_map_path"]).name[: -len(dataset.seg_map_suffix)]
        assert image_stem == label_stem == Path(stem).name  # pairing
        sample = dataset[index]
        labels = sample["data_samples"].gt_sem_seg.data
        assert labels.dtype == torch.int64
        np.testing.assert_array_equal(labels[0].numpy(), expected_labels(name, raw[stem]))
        valid = labels[labels != dataset.ignore_index]
        assert valid.numel() == 0 or int(valid.max()) < cfg.num_classes  # everything else is ignored
        assert tuple(sample["inputs"].shape[1:]) == labels.shape[1:]


def test_voc_void_ring_is_ignored_and_voc20_drops_background(miniature):
    data_root, _ = miniature("voc21")
    voc21 = build_dataset(load_dataset_config("voc21", data_root))
    voc20 = build_dataset(load_dataset_config("voc20", data_root))
    labels21 = voc21[0]["data_samples"].gt_sem_seg.data[0]
    labels20 = voc20[0]["data_samples"].gt_sem_seg.data[0]
    assert labels21[0, 0] == labels20[0, 0] == 255  # the void ring
    assert set(labels21.unique().tolist()) == {0, 1, 15, 255}
    assert set(labels20.unique().tolist()) == {0, 14, 255}  # background -> 255, person 15 -> 14
    assert voc21.ignore_index == voc20.ignore_index == 255
    assert isinstance(voc21, PascalVOCDataset)  # mmseg's own class, reused


@pytest.mark.parametrize("name", ["context459", "ade847"])
def test_uint16_labels_survive_loading_pipeline_and_metric(name, miniature):
    data_root, _ = miniature(name)
    dataset = build_dataset(load_dataset_config(name, data_root))
    assert dataset.ignore_index == U16_IGNORE
    samples = [dataset[i]["data_samples"] for i in range(len(dataset))]
    values = set().union(*(s.gt_sem_seg.data.unique().tolist() for s in samples))
    assert {300, U16_IGNORE} <= values
    assert (846 in values) == (name == "ade847") and 255 in values  # 255 is a real class here

    metric = IoUMetric(ignore_index=U16_IGNORE)
    metric.dataset_meta = dataset.metainfo
    for sample in samples:
        sample.pred_sem_seg = sample.gt_sem_seg.clone()
        metric.process([], [sample.to_dict()])
    num_classes = len(dataset.metainfo["classes"])
    area_intersect = sum(r[0] for r in metric.results)
    area_label = sum(r[3] for r in metric.results)
    assert area_label.shape == (num_classes,)
    assert area_label[300] > 0 and area_label[255] > 0
    assert torch.equal(area_intersect, area_label)  # perfect prediction, 65535 masked out
    assert metric.compute_metrics(metric.results)["mIoU"] == 100.0


def test_stock_loader_would_wrap_16_bit_labels(miniature):
    """The regression LoadAnnotationsU16 exists for: mmseg's loader maps 300 -> 44 and 65535 -> 255."""
    data_root, raw = miniature("ade847")
    path = str(data_root / "ADE20K_2021_17_01/annotations_detectron2/validation/ADE_val_00000001.tif")
    results = dict(seg_map_path=path, reduce_zero_label=False, seg_fields=[])
    wrapped = LoadAnnotations()(dict(results, seg_fields=[]))["gt_seg_map"]
    kept = LoadAnnotationsU16()(dict(results, seg_fields=[]))["gt_seg_map"]
    assert 300 % 256 in np.unique(wrapped)
    np.testing.assert_array_equal(kept, raw["ADE_val_00000001"].astype(np.int64))


def test_loader_applies_reduce_zero_label_like_mmseg(miniature):
    data_root, _ = miniature("ade150")
    path = str(data_root / "ade/ADEChallengeData2016/annotations/validation/ADE_val_00000001.png")
    results = dict(seg_map_path=path, reduce_zero_label=True, seg_fields=[])
    stock = LoadAnnotations()(dict(results, seg_fields=[]))["gt_seg_map"]
    ours = LoadAnnotationsU16()(dict(results, seg_fields=[]))["gt_seg_map"]
    np.testing.assert_array_equal(ours, stock.astype(np.int64))


def test_registry_names_and_configs_agree():
    assert sorted(DATASET_CLASSES) == list_dataset_configs()
    for name, cls in DATASET_CLASSES.items():
        assert DATASETS.get(name) is cls and DATASETS.get(cls.__name__) is cls
        cfg = load_dataset_config(name, "/data")
        assert cfg.name == name and cfg.type == cls.__name__
        assert (cfg.img_dir, cfg.ann_dir, cfg.split) == (cls.IMG_DIR, cls.ANN_DIR, cls.SPLIT)
        assert cfg.num_classes == len(cls.METAINFO["classes"]) == len(cls.METAINFO["palette"])
        assert cfg.has_background == cls.HAS_BACKGROUND
        assert cfg.expected_val_images == cls.EXPECTED_VAL_IMAGES
        if cfg.data_root is not None:
            assert cfg.data_root == f"/data/{cls.DATA_SUBDIR}"
    assert TRANSFORMS.get("LoadAnnotationsU16") is LoadAnnotationsU16


def test_metainfo_facts():
    assert DATASET_CLASSES["ade150"].METAINFO["classes"][7] == "bed "
    assert DATASET_CLASSES["coco_object"].METAINFO["classes"][:3] == ("background", "person", "bicycle")
    assert DATASET_CLASSES["context459"].METAINFO["classes"][0] == "accordion"
    assert "unknown" in DATASET_CLASSES["context459"].METAINFO["classes"]
    assert DATASET_CLASSES["ade847"].METAINFO["classes"][1] == "building, edifice"
    assert DATASET_CLASSES["voc20"].METAINFO["classes"][-1] == "tvmonitor"


def test_missing_root_names_the_prepare_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cliptrase data prepare voc21 --raw .* --out .*data"):
        build_dataset(load_dataset_config("voc21", tmp_path / "data"))


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(KeyError, match=r"valid: .*ade150.*voc21"):
        load_dataset_config("voc2012")


@pytest.mark.parametrize(("content", "error"), [(None, FileNotFoundError), ("\n\n", ValueError)])
def test_missing_or_empty_split_file(miniature, content, error):
    data_root, _ = miniature("voc21")
    split = data_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"
    if content is None:
        split.unlink()
    else:
        split.write_text(content)
    with pytest.raises(error, match=r"split file .*val\.txt"):
        build_dataset(load_dataset_config("voc21", data_root))


def test_missing_label_is_reported_at_construction(miniature):
    data_root, _ = miniature("cityscapes")
    next((data_root / "cityscapes/gtFine/val/lindau").glob("*_labelTrainIds.png")).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 2 label files missing .*lindau"):
        build_dataset(load_dataset_config("cityscapes", data_root))


def test_unreadable_image_fails_with_its_path(miniature):
    data_root, _ = miniature("ade150")
    (data_root / "ade/ADEChallengeData2016/images/validation/ADE_val_00000002.jpg").write_bytes(b"not a jpeg")
    dataset = build_dataset(load_dataset_config("ade150", data_root))
    with pytest.raises(ValueError, match=r"cannot load sample 1 .*ADE_val_00000002\.jpg"):
        dataset[1]


def test_count_mismatch_is_a_warning(miniature, caplog):
    data_root, _ = miniature("voc21")
    build_dataset(load_dataset_config("voc21", data_root))
    assert "3 images found" in caplog.text and "expected 1449" in caplog.text


def test_config_class_mismatch_is_an_error(miniature):
    data_root, _ = miniature("voc21")
    cfg = load_dataset_config("voc21", data_root)
    cfg.num_classes = 20
    with pytest.raises(ValueError, match=r"fix configs/dataset/voc21\.yaml"):
        build_dataset(cfg)


def test_data_root_defaults_to_the_environment(miniature, monkeypatch):
    data_root, raw = miniature("ade150")
    monkeypatch.setenv("CLIPTRASE_DATA", str(data_root))
    assert len(DATASET_CLASSES["ade150"](pipeline=[])) == len(raw)
    assert load_dataset_config("ade150").data_root == f"{data_root}/ade/ADEChallengeData2016"


def _guide_snippets() -> tuple[str, str]:
    """The python and yaml blocks of datasets/README.md "Adding a dataset", dedented."""
    guide = (REPO / "datasets" / "README.md").read_text(encoding="utf-8")
    section = guide[guide.index("## Adding a dataset") :]
    section = section[: section.find("\n## ", 5)] if "\n## " in section[5:] else section
    blocks = {lang: re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S) for lang in ("python", "yaml")}
    assert len(blocks["python"]) == len(blocks["yaml"]) == 1, "the guide has one module and one config"
    return textwrap.dedent(blocks["python"][0]), textwrap.dedent(blocks["yaml"][0])


def test_a_toy_dataset_added_the_documented_way(tmp_path, monkeypatch):
    """datasets/README.md "Adding a dataset", run as written: one module + one config, nothing else edited.

    The module is imported the way the package imports its own modules; the config goes into a copy of
    ``configs``. The dataset then builds, a composed job validates, its download (from a loopback server)
    and converter run, and every reader of the spec (catalogue, converters, tables) has it.
    """
    from helpers.config import compose_eval
    from helpers.loopback_http import ArchiveServer, guard_loopback, zip_bytes
    from helpers.miniatures import label_with, write_image, write_label

    from cliptrase.config import validate
    from cliptrase.datasets.download import DATASET_SOURCES, PREPARED_BYTES, download_datasets, raw_dir
    from cliptrase.datasets.prepare import PREPARERS, prepare_dataset
    from cliptrase.datasets.spec import get_spec, unregister_dataset
    from cliptrase.reporting import tables

    module_text, config_text = _guide_snippets()
    name = "my_benchmark"
    assert name not in DATASET_CLASSES
    config_dir = tmp_path / "configs"
    shutil.copytree(dataset_config_dir().parent, config_dir)
    (config_dir / "dataset" / f"{name}.yaml").write_text(config_text, encoding="utf-8")
    monkeypatch.setenv("CLIPTRASE_CONFIG_DIR", str(config_dir))
    module_path = tmp_path / f"{name}.py"
    module_path.write_text(module_text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"cliptrase_guide_{name}", module_path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        assert get_spec(name).dataset_class is module.MyBenchmarkDataset
        assert DATASET_SOURCES[name] == (name,) and PREPARED_BYTES[name] == 0
        assert PREPARERS[name] is module.prepare_my_benchmark
        assert tables.DATASET_ORDER[-1] == name and name not in tables.STANDARD_BENCHMARKS
        assert validate(compose_eval([f"dataset={name}"]))["dataset"].name == name

        official = tmp_path / "official"
        write_image(official / "images/a.jpg", 10, 12)
        write_label(official / "labels/a.png", label_with([0, 1]))
        files = {
            p.relative_to(official).as_posix(): p.read_bytes() for p in official.rglob("*") if p.is_file()
        }
        data_root = tmp_path / "data"
        server = ArchiveServer().start()
        server.add("my_benchmark_val.zip", zip_bytes(files))
        guard_loopback(monkeypatch)
        try:
            download_datasets([name], data_root, mirrors={name: server.base_url})
        finally:
            server.stop()
        prepare_dataset(name, raw_dir(name, data_root), data_root, workers=1)
        dataset = build_dataset(load_dataset_config(name, data_root))
        assert dataset[0]["data_samples"].gt_sem_seg.data.unique().tolist() == [0, 1]
    finally:
        unregister_dataset(name)
    assert name not in DATASET_SOURCES and name not in DATASET_CLASSES
