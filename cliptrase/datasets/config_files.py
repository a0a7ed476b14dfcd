"""Read ``configs/dataset/<name>.yaml`` outside Hydra.

The Hydra CLI composes these files itself; this module serves the callers that only need one dataset node
(``cliptrase data check``, :func:`~cliptrase.datasets.vocab.load_vocabulary` given a name, the specs, tests).
It resolves ``${paths.data_root}`` from an argument or ``$CLIPTRASE_DATA``, like ``configs/paths``. It imports
no dataset module (:mod:`cliptrase.datasets.build` builds the dataset a node describes).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cliptrase.paths import config_dir, default_data_root

REQUIRED_KEYS: tuple[str, ...] = (
    "name", "type", "data_root", "img_dir", "ann_dir", "split", "num_classes", "has_background",
    "paper_key", "standard_vocab", "expected_val_images",
)  # fmt: skip


def dataset_config_dir() -> Path:
    """Directory of the dataset group, ``configs/dataset``."""
    return config_dir() / "dataset"


def list_dataset_configs() -> list[str]:
    """Sorted stems of ``configs/dataset/*.yaml``."""
    return sorted(path.stem for path in dataset_config_dir().glob("*.yaml"))


def load_dataset_config(
    name: str, data_root: str | os.PathLike[str] | None = None, *, resolve: bool = True
) -> DictConfig:
    """Load ``configs/dataset/<name>.yaml`` with ``paths.data_root`` set to ``data_root``.

    Args:
        name: Config stem, e.g. ``voc21``.
        data_root: Directory holding the prepared benchmarks; ``None`` uses ``$CLIPTRASE_DATA`` or ``./data``.
        resolve: Resolve interpolations (``data_root``); unresolved nodes still give the other facts.

    Raises:
        KeyError: No such config; the message lists the valid names.
    """
    path = dataset_config_dir() / f"{name}.yaml"
    if not path.is_file():
        valid = ", ".join(list_dataset_configs()) or f"none (no configs under {dataset_config_dir()})"
        raise KeyError(f"unknown dataset {name!r}; valid: {valid}")
    root = Path(data_root) if data_root is not None else default_data_root()
    composed = OmegaConf.create({"paths": {"data_root": str(root)}, "dataset": OmegaConf.load(path)})
    cfg = composed.dataset
    if resolve:
        OmegaConf.resolve(composed)
        cfg = composed.dataset
    missing = [key for key in REQUIRED_KEYS if key not in cfg]
    if missing:
        raise KeyError(
            f"{path} lacks keys {', '.join(missing)}; see configs/dataset/voc21.yaml for the shape"
        )
    return cfg
