"""The one dataset registry: one :class:`DatasetSpec` per benchmark, carrying its class and every fact about
it outside its layout and vocabularies.

A spec is registered by :func:`register_dataset` on the dataset class, in the class's own module
(``@register_dataset(sources=..., converter=..., column=...)``). Everything else reads it:

* the download catalogue (``DATASET_SOURCES``, ``PREPARED_BYTES``, :func:`~.download.catalogue.sources_for`),
* the converters (``PREPARERS``, ``prepare_dataset``),
* ``cliptrase reproduce`` (the datasets of the ``paper`` and ``standard`` tables, what else to prepare),
* the tables (``STANDARD_BENCHMARKS``, ``DATASET_ORDER``: column order),
* the experiment configs' dataset lists (checked against it by ``tests/unit/test_datasets.py``).

Layout and vocabularies stay where Hydra composes them, ``configs/dataset/<name>.yaml`` (checked against the
class when a dataset is built); :meth:`DatasetSpec.config` reads that file. The class lookups
(:data:`DATASET_CLASSES`, :func:`get_dataset_class`, :func:`list_datasets`) and mmseg's ``DATASETS`` entries
(config ``type:`` names) are views of this registry or written by :func:`register_dataset` alone.

This module imports no dataset module (only :mod:`cliptrase.datasets.config_files` and the mmseg registries),
so every dataset module imports it; the readers (:func:`dataset_specs` and the views) import
:mod:`cliptrase.datasets` when called, which registers every built-in benchmark.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cliptrase.datasets.config_files import load_dataset_config
from cliptrase.registry import DATASETS

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from cliptrase.datasets.base import OVSSDataset
    from cliptrase.datasets.download.catalogue import Source

MB = 10**6
"""Bytes in a megabyte (decimal, as archive sizes are published): the unit of the sizes in the specs and in
the download catalogue."""

Converter = Callable[..., Path]
"""``converter(raw, out, *, workers, **options) -> dataset root`` (``cliptrase data prepare``)."""

T = TypeVar("T")


@dataclass(frozen=True)
class DatasetSpec:
    """The facts of one benchmark that the catalogue, the converters, reproduce and the tables read.

    Attributes:
        name: Config stem (``configs/dataset/<name>.yaml``), registry alias and table column.
        dataset_class: The registered ``OVSSDataset`` subclass (layout, classes, label encoding).
        sources: Its official downloads: keys of the shared ``download.catalogue.SOURCES`` (one archive may
            serve several benchmarks) or ``Source`` objects of its own; all extract into one raw folder.
        prepared_bytes: Estimated bytes its converter writes into the data root (disk-space planning).
        converter: ``prepare_<name>`` as a callable or ``"module:function"`` (imported on first use);
            ``None`` when the benchmark cannot be prepared by ``cliptrase data prepare``.
        converter_options: Extra keyword options the converter accepts (``--id-map`` -> ``id_map``).
        needs_raw: False for benchmarks generated locally (no ``--raw``, ``--out`` optional).
        column: Position of its column in the tables (lower first); ``None`` sorts it after those that
            have one, alphabetically.
        standard: One of the field's 8 standard-protocol benchmarks (``experiment=standard_table``,
            ``baselines_standard``, ``peers``, ``cliptrase reproduce standard``).
        paper: Position in the authors' README table (``experiment=paper_table``, ``cliptrase reproduce
            paper``); ``None`` when that table has no column for it.
        paper_prepare_also: Further benchmarks to prepare for the ``paper`` protocol (the authors score
            COCO-Object on the COCO-Stuff-171 maps).
    """

    name: str
    dataset_class: type
    sources: tuple[str | Source, ...] = ()
    prepared_bytes: int = 0
    converter: Converter | str | None = None
    converter_options: frozenset[str] = frozenset()
    needs_raw: bool = True
    column: int | None = None
    standard: bool = False
    paper: int | None = None
    paper_prepare_also: tuple[str, ...] = ()

    @property
    def source_keys(self) -> tuple[str, ...]:
        """The keys of :attr:`sources`, in order."""
        return tuple(s if isinstance(s, str) else s.key for s in self.sources)

    @property
    def own_sources(self) -> tuple[Source, ...]:
        """The ``Source`` objects this spec declares itself (not in the shared catalogue)."""
        return tuple(s for s in self.sources if not isinstance(s, str))

    @property
    def downloadable(self) -> bool:
        """Whether ``cliptrase data download`` knows where its archives come from."""
        return bool(self.sources)

    def preparer(self) -> Converter | None:
        """The converter as a callable (a ``"module:function"`` reference is imported now)."""
        if self.converter is None or callable(self.converter):
            return self.converter
        module, _, attr = self.converter.partition(":")
        return getattr(importlib.import_module(module), attr)

    def config(self, *, resolve: bool = False) -> DictConfig:
        """``configs/dataset/<name>.yaml``: layout and vocabularies (``paper_key``, ``standard_vocab``)."""
        return load_dataset_config(self.name, resolve=resolve)

    @property
    def paper_key(self) -> str | None:
        """The authors' vocabulary key (``paper_key`` of its config)."""
        return self.config().get("paper_key")

    @property
    def standard_vocab(self) -> str | None:
        """The mmseg-family class-name file stem (``standard_vocab`` of its config)."""
        return self.config().get("standard_vocab")


DATASET_SPECS: dict[str, DatasetSpec] = {}
"""Dataset name -> its spec, filled by :func:`register_dataset` as the dataset modules are imported."""


def register_dataset(cls: type[OVSSDataset] | None = None, /, **facts: Any) -> Any:
    """Register a dataset class with its :class:`DatasetSpec`.

    ``@register_dataset`` registers a class with no downloads, converter or table column;
    ``@register_dataset(sources=..., converter=..., column=...)`` adds those facts (the keyword arguments of
    ``DatasetSpec`` after ``name`` and ``dataset_class``). The spec goes into :data:`DATASET_SPECS` under the
    class's config name; the class also goes into mmseg's ``DATASETS`` under its class name and its config
    name, so a config may say ``type: VOC21Dataset`` or ``type: voc21``.
    """

    def register(dataset_cls: type[OVSSDataset]) -> type[OVSSDataset]:
        name = dataset_cls.CONFIG_NAME
        if not name:
            raise ValueError(f"{dataset_cls.__name__} must set CONFIG_NAME before it is registered")
        if name in DATASET_SPECS:
            registered = DATASET_SPECS[name].dataset_class.__name__
            raise KeyError(f"dataset {name!r} is already registered by {registered}")
        spec = DatasetSpec(name=name, dataset_class=dataset_cls, **facts)
        DATASETS.register_module(name=[dataset_cls.__name__, name], module=dataset_cls)
        DATASET_SPECS[name] = spec
        return dataset_cls

    return register if cls is None else register(cls)


def unregister_dataset(name: str) -> DatasetSpec:
    """Undo :func:`register_dataset` for config name ``name`` (a dataset defined for a while: a test's)."""
    spec = DATASET_SPECS.pop(name)
    for key in (name, spec.dataset_class.__name__):
        DATASETS.module_dict.pop(key, None)
    return spec


def dataset_specs() -> dict[str, DatasetSpec]:
    """Every registered spec by name, sorted by name; the built-in benchmarks are imported first."""
    importlib.import_module("cliptrase.datasets")  # registers every module of the package
    return dict(sorted(DATASET_SPECS.items()))


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``.

    Raises:
        KeyError: Unknown name; the message lists the valid ones.
    """
    specs = dataset_specs()
    if name not in specs:
        raise KeyError(f"unknown dataset {name!r}; valid: {', '.join(specs)}")
    return specs[name]


def get_dataset_class(name: str) -> type[OVSSDataset]:
    """The dataset class registered as config name or class name ``name``.

    Raises:
        KeyError: Unknown name; the message lists the valid ones.
    """
    specs = dataset_specs()
    if name in specs:
        return specs[name].dataset_class
    for spec in specs.values():
        if spec.dataset_class.__name__ == name:
            return spec.dataset_class
    raise KeyError(f"unknown dataset {name!r}; valid: {', '.join(specs)}")


def list_datasets() -> list[str]:
    """Sorted config names of every registered dataset."""
    return list(dataset_specs())


def table_order() -> tuple[str, ...]:
    """Names of the datasets that have a table column, in column order."""
    ranked = [(s.column, s.name) for s in dataset_specs().values() if s.column is not None]
    return tuple(name for _, name in sorted(ranked))


def standard_benchmarks() -> tuple[str, ...]:
    """The field's 8 standard-protocol benchmarks, in the column order of its tables."""
    standard = {s.name for s in dataset_specs().values() if s.standard}
    return tuple(n for n in table_order() if n in standard) + tuple(sorted(standard - set(table_order())))


def paper_benchmarks() -> tuple[str, ...]:
    """The datasets of the authors' README table, in its order."""
    ranked = [(s.paper, s.name) for s in dataset_specs().values() if s.paper is not None]
    return tuple(name for _, name in sorted(ranked))


class SpecView(Mapping[str, T]):
    """A read-only mapping name -> one fact of each spec, computed from the registry on every access.

    It keeps the old module-level tables (``DATASET_SOURCES``, ``PREPARED_BYTES``, ``PREPARERS``) as views
    of the specs, so a dataset registered later (a new module, a test's toy) is in them too.
    """

    def __init__(
        self, fact: Callable[[DatasetSpec], T], where: Callable[[DatasetSpec], bool] | None = None
    ) -> None:
        self._fact = fact
        self._where = where or (lambda _spec: True)

    def _specs(self) -> dict[str, DatasetSpec]:
        return {name: spec for name, spec in dataset_specs().items() if self._where(spec)}

    def __getitem__(self, name: str) -> T:
        spec = self._specs().get(name)
        if spec is None:
            raise KeyError(name)
        return self._fact(spec)

    def __contains__(self, name: object) -> bool:
        return name in self._specs()

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs())

    def __len__(self) -> int:
        return len(self._specs())

    def __repr__(self) -> str:
        return f"SpecView({dict(self.items())!r})"


DATASET_CLASSES: Mapping[str, type] = SpecView(lambda spec: spec.dataset_class)
"""Config name -> dataset class: a view of :data:`DATASET_SPECS`."""
