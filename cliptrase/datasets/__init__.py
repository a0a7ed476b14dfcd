"""The benchmarks as mmseg datasets, their specs, vocabularies, converters and checks.

Importing this package imports every module of it (:func:`_import_modules`: a new benchmark module is found
without an edit here), which registers every dataset class with its spec (:mod:`.spec`, mmseg's
``DATASETS``), ``LoadAnnotationsU16`` and ``CheckLabels`` (``TRANSFORMS``); ``cliptrase.registry`` names this
package in ``locations``, so configs resolve without extra imports. The names below are the package's API.
"""

from __future__ import annotations

import importlib
import pkgutil

from cliptrase.datasets.base import LoadAnnotationsU16, OVSSDataset, default_test_pipeline
from cliptrase.datasets.build import build_dataset
from cliptrase.datasets.config_files import load_dataset_config
from cliptrase.datasets.demo import ensure_demo_dataset
from cliptrase.datasets.spec import (
    DATASET_CLASSES,
    DatasetSpec,
    dataset_specs,
    get_dataset_class,
    get_spec,
    list_datasets,
    register_dataset,
)
from cliptrase.datasets.vocab import Vocabulary, load_vocabulary
from cliptrase.paths import default_data_root


def _import_modules() -> None:
    """Import every module of this package (not the subpackages, not ``_private`` ones): what registers a
    dataset added as a new module."""
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_modules()

__all__ = [
    "DATASET_CLASSES",
    "DatasetSpec",
    "LoadAnnotationsU16",
    "OVSSDataset",
    "Vocabulary",
    "build_dataset",
    "dataset_specs",
    "default_data_root",
    "default_test_pipeline",
    "ensure_demo_dataset",
    "get_dataset_class",
    "get_spec",
    "list_datasets",
    "load_dataset_config",
    "load_vocabulary",
    "register_dataset",
]
