"""The evaluation step of ``cliptrase reproduce``: one Hydra-composed ``cliptrase-eval`` job per (dataset,
protocol, method), run in this process exactly as a cell of a ``cliptrase-eval -m`` sweep
(:func:`cliptrase.harness.run.run_safely`): under the lock of its config hash, skipped when a complete result
with that hash exists, and a failing job recorded (``failed.json``) while the other jobs run."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cliptrase.harness.compose import compose_job
from cliptrase.harness.identity import row_label
from cliptrase.harness.run import EVALUATED, FAILED, SKIPPED, run_safely
from cliptrase.reproduce.plan import DatasetReport, JobResult, Options, TableSpec, elapsed

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


_STATUS = {EVALUATED: "evaluated", SKIPPED: "complete result found, skipped"}


def _run_job(dataset: str, protocol: str, method: str, cfg: Any, position: str) -> JobResult:
    """Evaluate one composed job as a ``cliptrase-eval -m`` cell is (:func:`run_safely`).

    It holds the lock of its config hash (an identical job elsewhere is waited for, then its record is
    reused), skips the job when a complete result exists, and records a failure in ``failed.json``.
    """
    import torch

    logger.info("%s %s/%s/%s", position, dataset, protocol, method)
    with torch.no_grad():
        outcome = run_safely(cfg)
    row = outcome.row or row_label(cfg)  # resolved by run_safely, unless the config does not resolve
    if outcome.status == FAILED:  # logged and recorded by run_safely; the summary lists it
        return JobResult(dataset, protocol, method, row, None, f"failed: {outcome.error}")
    miou = (outcome.metrics or {}).get("mIoU")
    return JobResult(dataset, protocol, method, row, miou, _STATUS[outcome.status])


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
    failed = [j for j in jobs if j.status.startswith("failed")]
    if failed:
        logger.error(
            "%d of %d cells failed (recorded in failed.json; re-run the same command to retry only those):",
            len(failed),
            len(jobs),
        )
        for job in failed:
            error = job.status.removeprefix("failed: ")
            logger.error("  failed: %s/%s/%s: %s", job.dataset, job.protocol, job.method, error)
    return jobs
