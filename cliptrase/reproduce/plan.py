"""What ``cliptrase reproduce`` reproduces (the tables and their datasets) and what it reports per step."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from cliptrase.datasets.download import FreeBytes
from cliptrase.datasets.spec import dataset_specs, paper_benchmarks, standard_benchmarks

READY_DIR = ".cliptrase-ready"
"""Folder under the data root with one marker per dataset whose prepared copy passed ``data check``."""
SUMMARY_NAME = "reproduce_summary.md"


@dataclass(frozen=True)
class TableSpec:
    """One reproducible table: its experiment config, protocols, default datasets and methods."""

    experiment: str
    protocols: tuple[str, ...]
    datasets: tuple[str, ...]
    methods: tuple[str, ...] = ("cliptrase",)
    extra_prepare: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _tables() -> dict[str, TableSpec]:
    specs = dataset_specs().values()
    return {
        "paper": TableSpec(
            experiment="paper_table",
            protocols=("paper224", "paper336"),
            datasets=paper_benchmarks(),
            extra_prepare=tuple((s.name, s.paper_prepare_also) for s in specs if s.paper_prepare_also),
        ),
        "standard": TableSpec(
            experiment="standard_table",
            protocols=("standard",),
            datasets=standard_benchmarks(),
        ),
    }


TABLES: dict[str, TableSpec] = _tables()
"""``paper``: the authors' README table (configs/experiment/paper_table.yaml); ``standard``: the field's
8-benchmark table (configs/experiment/standard_table.yaml). Their datasets and what else to prepare come from
the dataset specs (``paper``, ``standard``, ``paper_prepare_also`` in :mod:`cliptrase.datasets.spec`)."""


@dataclass
class DatasetReport:
    """What happened to one dataset, step by step, in this run."""

    name: str
    steps: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ready: bool = False
    failed: bool = False


@dataclass
class JobResult:
    """One evaluated (dataset, protocol, method): its table row label and mIoU."""

    dataset: str
    protocol: str
    method: str
    row: str
    miou: float | None
    status: str


@dataclass
class Options:
    """Everything a reproduction run needs, validated by :func:`_validate`."""

    table: str
    datasets: list[str]
    root: Path
    results_dir: Path | None
    model: str | None
    weights: Path | None
    methods: list[str]
    max_images: int | None
    device: str | None
    mirrors: dict[str, str]
    keep_archives: bool
    workers: int | None = None
    subset: bool = False
    free_bytes: FreeBytes | None = None


def elapsed(t0: float) -> str:
    """Seconds (or minutes, past two) since the monotonic time ``t0``, for step reports."""
    seconds = time.monotonic() - t0
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
