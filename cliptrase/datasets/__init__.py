"""The benchmarks as mmseg datasets, their specs, vocabularies, converters and checks.

Importing this package imports every module of it (a new benchmark module is found without an edit here),
which registers every dataset class (``DATASETS``) with its spec (:mod:`.spec`), ``LoadAnnotationsU16`` and
``CheckLabels`` (``TRANSFORMS``); ``cliptrase.registry`` names it in ``locations``, so configs resolve
without extra imports.
"""

from __future__ import annotations

import importlib
import pkgutil

from cliptrase.datasets import ade, cityscapes, coco, context, demo, label_check, voc
from cliptrase.datasets.base import (
    DATASET_CLASSES,
    LoadAnnotationsU16,
    OVSSDataset,
    default_data_root,
    default_test_pipeline,
    get_dataset_class,
    list_datasets,
)
from cliptrase.datasets.config import build_dataset, load_dataset_config
from cliptrase.datasets.demo import ensure_demo_dataset
from cliptrase.datasets.spec import DatasetSpec, dataset_specs, get_spec
from cliptrase.datasets.vocab import Vocabulary, load_vocabulary


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
    "ade",
    "build_dataset",
    "cityscapes",
    "coco",
    "context",
    "dataset_specs",
    "default_data_root",
    "default_test_pipeline",
    "demo",
    "ensure_demo_dataset",
    "get_dataset_class",
    "get_spec",
    "label_check",
    "list_datasets",
    "load_dataset_config",
    "load_vocabulary",
    "voc",
]
