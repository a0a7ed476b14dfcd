"""What identifies a job: its config hash (resume key), run folder name and table row label."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cliptrase.evaluation.results import config_hash

HASH_EXCLUDE = (
    "paths",
    "hydra",
    "results",
    "save_predictions",
    "num_workers",
    "device",
    "experiment_name",
    "window_batch",
    "batch_size",
    "threads",
)
"""Keys that do not change the numbers and therefore not the config hash."""


def config_hash_of(cfg: DictConfig) -> str:
    """Hash of everything that changes the numbers (the data root does not: the same data moves)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container["dataset"].pop("data_root", None)
    return config_hash(container, exclude=HASH_EXCLUDE)


def run_name_of(cfg: DictConfig, digest: str) -> str:
    """Run folder name: ``<dataset>__<model>__<method>__<protocol>__<hash[:8]>``."""
    parts = (cfg.dataset.name, cfg.model.slug, cfg.method.name, cfg.protocol.name, digest[:8])
    return "__".join(str(p) for p in parts)


def row_label(cfg: DictConfig) -> str:
    """Table row: method | model | protocol, plus the method overrides of this job (ablations)."""
    model = cfg.model.slug if not cfg.model.weights else f"{cfg.model.slug}:{Path(cfg.model.weights).stem}"
    label = f"{cfg.method.name} | {model} | {cfg.protocol.name}"
    try:
        overrides = [o for o in HydraConfig.get().overrides.task if o.startswith("method.")]
    except ValueError:  # not running under Hydra (tests and reproduce calling run() directly)
        overrides = []
    return label + (
        " | " + ",".join(o.removeprefix("method.") for o in sorted(overrides)) if overrides else ""
    )
