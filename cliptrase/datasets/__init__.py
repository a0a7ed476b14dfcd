"""The benchmarks as mmseg datasets, their vocabularies, converters and checks.

Importing this package registers every dataset class (``DATASETS``), ``LoadAnnotationsU16`` and
``CheckLabels`` (``TRANSFORMS``); ``cliptrase.registry`` names it in ``locations``, so configs resolve
without extra imports.
"""

from __future__ import annotations

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
from cliptrase.datasets.vocab import Vocabulary, load_vocabulary

__all__ = [
    "DATASET_CLASSES",
    "LoadAnnotationsU16",
    "OVSSDataset",
    "Vocabulary",
    "ade",
    "build_dataset",
    "cityscapes",
    "coco",
    "context",
    "default_data_root",
    "default_test_pipeline",
    "demo",
    "ensure_demo_dataset",
    "get_dataset_class",
    "label_check",
    "list_datasets",
    "load_dataset_config",
    "load_vocabulary",
    "voc",
]
