"""mmseg child registries of cliptrase.

Names in configs resolve through these (``locations`` imports the defining module on demand, so no
import-for-side-effect lines are needed in entry points). Only this module, ``datasets/``, ``segmentor``,
``evaluation/`` and ``cli/`` import mmseg; ``models/`` and ``method/`` stay free of it.
"""

from __future__ import annotations

from mmengine.registry import Registry
from mmseg.registry import DATASETS as MMSEG_DATASETS
from mmseg.registry import METRICS as MMSEG_METRICS
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.registry import TRANSFORMS as MMSEG_TRANSFORMS

DATASETS = Registry("dataset", parent=MMSEG_DATASETS, locations=["cliptrase.datasets"])
TRANSFORMS = Registry("transform", parent=MMSEG_TRANSFORMS, locations=["cliptrase.datasets"])
MODELS = Registry("model", parent=MMSEG_MODELS, locations=["cliptrase.segmentor"])
METRICS = Registry("metric", parent=MMSEG_METRICS, locations=["cliptrase.evaluation"])
