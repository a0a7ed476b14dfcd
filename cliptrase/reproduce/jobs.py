"""The evaluation step of ``cliptrase reproduce``: one Hydra-composed ``cliptrase-eval`` job per (dataset,
protocol, method), run in this process, skipped when a complete result with its config hash exists."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cliptrase.errors import USER_ERRORS, message_of
from cliptrase.evaluation.results import find_complete
from cliptrase.harness.compose import compose_job
from cliptrase.harness.identity import config_hash_of, row_label
from cliptrase.harness.run import run
from cliptrase.reproduce.spec import DatasetReport, JobResult, Options, TableSpec, elapsed

logger = logging.getLogger(__name__)


def _quote(value: object) -> str:
    """A Hydra override value that survives spaces, commas and quotes in paths."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def job_overrides(spec: TableSpec, dataset: str, protocol: str, method: str, opts: Options) -> list[str]:
    """Hydra overrides of one job: the experiment, then the deltas this run asks for."""
    overrides = [
        f"experiment={spec.experiment}",
        f"dataset={dataset}",
        f"protocol={protocol}",
        f"method={method}",
        f"paths.data_root={_quote(opts.root)}",
    ]
    if opts.results_dir is not None:
        overrides.append(f"paths.results_dir={_quote(opts.results_dir)}")
    if opts.weights is not None:
        overrides += ["model=weights_file", f"model.weights={_quote(opts.weights)}"]
    elif opts.model:
        overrides.append(f"model={opts.model}")
    if opts.max_images:
        overrides.append(f"max_images={opts.max_images}")
    if opts.device:
        overrides.append(f"device={opts.device}")
    return overrides


def experiment_dir_of(spec: TableSpec, opts: Options) -> Path:
    """``<results_dir>/<experiment>`` as the composed config resolves it (``--results`` or the default)."""
    cfg = compose_job(job_overrides(spec, opts.datasets[0], spec.protocols[0], opts.methods[0], opts))
    return Path(cfg.paths.results_dir) / cfg.experiment_name


def _run_job(dataset: str, protocol: str, method: str, cfg: Any, position: str) -> JobResult:
    """Evaluate one composed job, or skip it when a complete result with its config hash exists."""
    import torch

    experiment_dir = Path(cfg.paths.results_dir) / cfg.experiment_name
    if find_complete(experiment_dir, config_hash_of(cfg)) is not None:
        status = "complete result found, skipped"
    else:
        logger.info("%s evaluating %s/%s/%s", position, dataset, protocol, method)
        status = "evaluated"
    try:
        with torch.no_grad():
            metrics = run(cfg) or {}
    except (*USER_ERRORS, RuntimeError, OSError) as err:
        message = message_of(err)
        logger.error("%s/%s/%s: %s", dataset, protocol, method, message)
        return JobResult(dataset, protocol, method, row_label(cfg), None, f"failed: {message}")
    return JobResult(dataset, protocol, method, row_label(cfg), metrics.get("mIoU"), status)


def evaluate_all(spec: TableSpec, opts: Options, reports: Sequence[DatasetReport]) -> list[JobResult]:
    """Run (or skip, when a complete result exists) every (protocol, method) job of the ready datasets."""
    jobs: list[JobResult] = []
    ready = [r for r in reports if r.ready]
    total = len(ready) * len(spec.protocols) * len(opts.methods)
    for report in ready:
        t0, statuses = time.monotonic(), []
        for protocol in spec.protocols:
            for method in opts.methods:
                cfg = compose_job(job_overrides(spec, report.name, protocol, method, opts))
                job = _run_job(report.name, protocol, method, cfg, f"[{len(jobs) + 1}/{total}]")
                jobs.append(job)
                statuses.append(f"{protocol}/{method} {job.status}")
                report.failed |= job.miou is None and job.status.startswith("failed")
        report.steps["evaluate"] = "; ".join(statuses) + f" ({elapsed(t0)})"
    return jobs
