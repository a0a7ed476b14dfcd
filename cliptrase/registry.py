"""mmseg child registries of cliptrase (scope ``cliptrase``).

Names in configs resolve through these (``locations`` imports the defining module on demand, so no
import-for-side-effect lines are needed in entry points); names cliptrase does not define fall through
to mmseg's and mmengine's. mmengine's Runner looks this module up by scope name, so every registry it
builds from has a child here. Only this module, ``datasets/``, ``engine/`` and ``cli/``
import mmseg; ``models/`` and ``method/`` stay free of it.
"""

from __future__ import annotations

from mmengine.registry import Registry
from mmseg import registry as mmseg_registry

DATASETS = Registry("dataset", parent=mmseg_registry.DATASETS, locations=["cliptrase.datasets"])
TRANSFORMS = Registry(
    "transform",
    parent=mmseg_registry.TRANSFORMS,
    locations=["cliptrase.datasets", "cliptrase.protocols.transforms"],
)
MODELS = Registry("model", parent=mmseg_registry.MODELS, locations=["cliptrase.engine.segmentor"])
METRICS = Registry("metric", parent=mmseg_registry.METRICS, locations=["cliptrase.engine.metrics"])

# Pass-through children (nothing registered by cliptrase) so the Runner finds the "cliptrase" scope.
DATA_SAMPLERS = Registry("data sampler", parent=mmseg_registry.DATA_SAMPLERS)
EVALUATOR = Registry("evaluator", parent=mmseg_registry.EVALUATOR)
HOOKS = Registry("hook", parent=mmseg_registry.HOOKS)
LOG_PROCESSORS = Registry("log_processor", parent=mmseg_registry.LOG_PROCESSORS)
LOOPS = Registry("loop", parent=mmseg_registry.LOOPS)
MODEL_WRAPPERS = Registry("model_wrapper", parent=mmseg_registry.MODEL_WRAPPERS)
VISBACKENDS = Registry("vis_backend", parent=mmseg_registry.VISBACKENDS)
VISUALIZERS = Registry("visualizer", parent=mmseg_registry.VISUALIZERS)
