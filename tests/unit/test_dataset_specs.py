"""The dataset specs: one per benchmark, consistent, and the one source of the lists that mirror them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cliptrase.datasets import DATASET_CLASSES
from cliptrase.datasets.config_files import list_dataset_configs
from cliptrase.datasets.download import (
    DATASET_SOURCES,
    PREPARED_BYTES,
    SOURCES,
    downloadable_datasets,
    source_table,
)
from cliptrase.datasets.prepare import NEEDS_NO_RAW, OPTIONS, PREPARERS
from cliptrase.datasets.spec import dataset_specs, paper_benchmarks, standard_benchmarks, table_order
from cliptrase.paths import config_dir
from cliptrase.reporting import tables
from cliptrase.reproduce.plan import TABLES

PACKAGE = Path(__file__).resolve().parents[2] / "cliptrase" / "datasets"

EXPERIMENT_DATASETS = {
    "standard_table": standard_benchmarks,
    "baselines_standard": standard_benchmarks,
    "peers": standard_benchmarks,
    "backbones": standard_benchmarks,
    "paper_table": paper_benchmarks,
}
"""Experiment config -> the spec list its ``dataset`` sweep must equal, in order."""


def _swept_datasets(experiment: str) -> tuple[str, ...] | None:
    cfg = OmegaConf.load(config_dir() / "experiment" / f"{experiment}.yaml")
    swept = OmegaConf.select(cfg, "hydra.sweeper.params.dataset")
    return None if swept is None else tuple(str(swept).split(","))


def test_every_module_of_the_package_is_imported():
    """A new benchmark module registers itself: ``cliptrase.datasets`` imports every module of its folder."""
    for path in PACKAGE.glob("*.py"):
        if not path.name.startswith("_"):
            assert f"cliptrase.datasets.{path.stem}" in sys.modules, path


def test_one_spec_per_registered_dataset_and_config():
    specs = dataset_specs()
    assert list(specs) == sorted(DATASET_CLASSES) == list_dataset_configs()
    for name, spec in specs.items():
        assert spec.name == name and spec.dataset_class is DATASET_CLASSES[name]
        assert spec.config().name == name


def test_the_field_s_tables():
    assert standard_benchmarks() == (
        "voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff171", "cityscapes", "ade150",
    )  # fmt: skip
    assert table_order() == (*standard_benchmarks(), "context459", "ade847", "demo")
    assert paper_benchmarks() == (
        "voc20", "voc21", "coco_object", "coco_stuff171", "context59", "context60", "context459", "ade150",
        "ade847",
    )  # fmt: skip
    columns = [s.column for s in dataset_specs().values() if s.column is not None]
    papers = [s.paper for s in dataset_specs().values() if s.paper is not None]
    assert len(set(columns)) == len(columns) and len(set(papers)) == len(papers)
    for name in paper_benchmarks():  # the authors' table needs the authors' vocabulary
        assert dataset_specs()[name].paper_key, name


def test_the_old_names_are_views_of_the_specs():
    specs = dataset_specs()
    assert standard_benchmarks() == tables.STANDARD_BENCHMARKS
    assert table_order() == tables.DATASET_ORDER
    assert dict(DATASET_SOURCES) == {n: s.source_keys for n, s in specs.items() if s.sources}
    assert set(DATASET_SOURCES) == set(list_dataset_configs()) - {"demo"} == set(downloadable_datasets())
    assert dict(PREPARED_BYTES) == {n: s.prepared_bytes for n, s in specs.items() if s.sources}
    assert {n: f.__name__ for n, f in PREPARERS.items()} == {
        n: s.preparer().__name__ for n, s in specs.items() if s.converter
    }
    assert set(NEEDS_NO_RAW) == {"demo"} and dict(OPTIONS) == {"ade847": frozenset({"id_map"})}
    assert TABLES["paper"].datasets == paper_benchmarks()
    assert TABLES["standard"].datasets == standard_benchmarks()
    assert TABLES["paper"].extra_prepare == (("coco_object", ("coco_stuff171",)),)


def test_every_source_a_spec_names_is_known():
    known = source_table()
    for spec in dataset_specs().values():
        for key in spec.source_keys:
            assert key in known, (spec.name, key)
        assert len({known[k].raw_dir for k in spec.source_keys}) <= 1, spec.name  # one --raw per converter
        for other in spec.paper_prepare_also:
            assert other in dataset_specs(), (spec.name, other)
    assert set(SOURCES) <= set(known)


@pytest.mark.parametrize("experiment", sorted(EXPERIMENT_DATASETS))
def test_experiment_dataset_lists_mirror_the_specs(experiment):
    assert _swept_datasets(experiment) == EXPERIMENT_DATASETS[experiment](), (
        f"configs/experiment/{experiment}.yaml: hydra.sweeper.params.dataset must list "
        f"{','.join(EXPERIMENT_DATASETS[experiment]())} (the dataset specs)"
    )


def test_every_experiment_sweeping_datasets_is_checked():
    swept = {p.stem for p in (config_dir() / "experiment").glob("*.yaml") if _swept_datasets(p.stem)}
    assert swept == set(EXPERIMENT_DATASETS)
    for table in TABLES.values():
        assert _swept_datasets(table.experiment) == table.datasets
