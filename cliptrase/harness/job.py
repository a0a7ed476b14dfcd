"""A job resolved once: its identity and its dataset's facts, as small frozen values the harness passes down.

:func:`resolve_job` runs at the start of :func:`cliptrase.harness.run.run_safely` (and of the bare
:func:`~cliptrase.harness.run.run` and :func:`~cliptrase.harness.evaluate.evaluate`): the config is validated,
the config hash, run name and row label are computed, and the dataset class and the prompts of the dataset
under the protocol are looked up, each once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from omegaconf import DictConfig

from cliptrase.config import validate
from cliptrase.datasets.spec import get_dataset_class
from cliptrase.harness.identity import JobIdentity, job_identity
from cliptrase.harness.runtime import resolve_precision
from cliptrase.protocols.prompts import JobPrompts, job_prompts


@dataclass(frozen=True)
class DatasetFacts:
    """What the job needs to know about its dataset.

    Attributes:
        name: config name (``voc21``).
        dataset_class: the registered ``OVSSDataset`` subclass (layout, classes, label encoding).
        prompts: its vocabulary under the job's protocol, flattened (:class:`JobPrompts`).
    """

    name: str
    dataset_class: type
    prompts: JobPrompts


@dataclass(frozen=True)
class Job:
    """A validated job: its config groups, identity and dataset facts."""

    groups: Mapping[str, Any]
    identity: JobIdentity
    dataset: DatasetFacts


def resolve_job(
    cfg: DictConfig, *, groups: Mapping[str, Any] | None = None, run_name: str | None = None
) -> Job:
    """Validate ``cfg`` (unless its ``groups`` are given), resolve its precision (written into ``cfg``, before
    the hash), then its identity and its dataset's facts.

    Raises:
        ConfigError: the config is invalid (the message names the key and the valid values).
    """
    groups = dict(groups) if groups is not None else validate(cfg)
    resolve_precision(cfg)  # before the hash: the record and the row say which precision ran
    ds_cfg = groups["dataset"]
    dataset_class = get_dataset_class(ds_cfg.type)
    prompts = job_prompts(ds_cfg, groups["protocol"], dataset_class=dataset_class)
    return Job(
        groups=MappingProxyType(groups),
        identity=job_identity(cfg, run_name=run_name),
        dataset=DatasetFacts(ds_cfg.name, dataset_class, prompts),
    )
