"""A sweep that survives a bad cell: failed jobs are recorded, the others run, and the end says which failed.

In a ``-m`` multirun, :func:`run_job` catches a job's error, logs it (one line for a user error, the
traceback for a programming error), writes the cell's ``failed.json`` (:mod:`cliptrase.evaluation.failures`)
and one outcome line into the sweep folder, and returns, so the launcher goes on with the next cell.
:class:`SweepSummary` (a Hydra callback named in ``configs/eval.yaml``) reads those outcomes when the
sweep ends, logs the failed cells and sets :data:`FAILED_CELLS`, from which ``cliptrase-eval`` exits
non-zero. A single run (no ``-m``) re-raises instead, so its error boundary reports it.

Every job runs holding the lock of its config hash (:mod:`cliptrase.utils.locks`): an identical job started
meanwhile waits, then reuses the record; a cell that succeeds drops its earlier ``failed.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cliptrase.errors import USER_ERRORS, message_of
from cliptrase.evaluation.failures import FailedRecord, clear_failure, write_failure
from cliptrase.harness.identity import config_hash_of, row_label, run_name_of
from cliptrase.harness.run import experiment_dir_of, run
from cliptrase.harness.runtime import is_main_process, world_size
from cliptrase.utils.fs import atomic_write_text
from cliptrase.utils.locks import held, job_lock

logger = logging.getLogger("cliptrase.eval")

OUTCOMES_DIR = "outcomes"
"""Folder of the Hydra sweep directory holding one ``<job number>.json`` per finished job."""

FAILED_CELLS: list[dict[str, str]] = []
"""Failed cells of the last multirun in this process, filled by :class:`SweepSummary` at its end."""


def in_multirun() -> bool:
    """Whether this job is one cell of a ``-m`` sweep."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(cfg: DictConfig) -> dict | None:
    """:func:`~cliptrase.harness.run.run`, with the failure of a sweep cell recorded instead of raised.

    Returns:
        The metrics; None when skipped as complete or, in a sweep, when the job failed (recorded).

    Raises:
        Exception: outside a sweep, the job's error, unchanged (the error boundary reports it).
    """
    try:
        metrics = _locked_run(cfg)
    except Exception as err:
        if not in_multirun():
            raise
        _fail_cell(cfg, err)
        return None
    if in_multirun():
        _note_outcome(cfg, "ok", "")
    return metrics


def _locked_run(cfg: DictConfig) -> dict | None:
    """:func:`run` holding the lock of the job's config hash.

    A second identical job (another process, or another node on a shared filesystem) waits here, then
    finds the first one's complete record and reuses it. Under torchrun the ranks of one job share the
    work, so none of them locks.
    """
    if world_size() > 1:
        return run(cfg)
    try:
        digest = config_hash_of(cfg)
    except Exception:  # a config that does not resolve: run() reports it properly
        return run(cfg)
    experiment_dir, run_name = experiment_dir_of(cfg), run_name_of(cfg, digest)
    with held(job_lock(experiment_dir, digest), f"the identical job {run_name}"):
        metrics = run(cfg)
        clear_failure(experiment_dir / run_name)  # an earlier failure of this cell is now retried
    return metrics


def _fail_cell(cfg: DictConfig, err: Exception) -> None:
    line = message_of(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, USER_ERRORS):
        logger.error("cell failed: %s", line)
    else:
        logger.exception("cell failed with a programming error")
    run_name = _record(cfg, err, line) if is_main_process() else None
    _note_outcome(cfg, "failed", line, run_name)


def _record(cfg: DictConfig, err: Exception, line: str) -> str | None:
    """Write the cell's ``failed.json``; None when the config cannot even be resolved (no run folder)."""
    try:
        digest = config_hash_of(cfg)
        run_name = run_name_of(cfg, digest)
        record = FailedRecord(
            experiment=str(cfg.experiment_name),
            run=run_name,
            row=row_label(cfg),
            column=str(cfg.dataset.name),
            metric_definition=str(cfg.protocol.metric),
            config_hash=digest,
            error=line,
            error_type=type(err).__name__,
            config=OmegaConf.to_container(cfg, resolve=True),
        )
        path = write_failure(record, experiment_dir_of(cfg) / run_name)
    except Exception as write_err:  # the config itself is broken, or the disk: the summary still says it
        logger.warning("could not record the failed cell: %s", message_of(write_err))
        return None
    logger.info("recorded the failed cell in %s", path)
    return run_name


def _note_outcome(cfg: DictConfig, status: str, error: str, run_name: str | None = None) -> None:
    """One ``<sweep dir>/outcomes/<job number>.json`` per job, read by :class:`SweepSummary` at the end."""
    if not is_main_process():
        return
    hydra_cfg = HydraConfig.get()
    folder = Path(hydra_cfg.sweep.dir) / OUTCOMES_DIR
    outcome = {
        "status": status,
        "run": run_name or "",
        "overrides": " ".join(hydra_cfg.overrides.task),
        "error": error,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / f"{hydra_cfg.job.num}.json", json.dumps(outcome) + "\n")
    except OSError as err:
        logger.warning("could not note the outcome of job %s: %s", hydra_cfg.job.num, err)


def read_outcomes(sweep_dir: Path) -> list[dict[str, Any]]:
    """The outcomes the jobs of a sweep noted, in job order."""
    folder = Path(sweep_dir) / OUTCOMES_DIR
    paths = sorted(folder.glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


class SweepSummary(Callback):
    """Hydra callback (``configs/eval.yaml``): at the end of a multirun, log the failed cells.

    It sets :data:`FAILED_CELLS`; ``cliptrase-eval`` then exits with ``ExitCode.INCOMPLETE``. Outcomes are
    read from the sweep folder, so jobs run by any launcher (local, joblib, SLURM) are counted.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        FAILED_CELLS.clear()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        outcomes = read_outcomes(Path(config.hydra.sweep.dir))
        failed = [o for o in outcomes if o["status"] == "failed"]
        FAILED_CELLS.extend(failed)
        if not failed:
            logger.info("sweep done: %d cells, none failed", len(outcomes))
            return
        logger.error(
            "sweep done: %d of %d cells failed (re-run the same command to retry only those):",
            len(failed),
            len(outcomes),
        )
        for outcome in failed:
            logger.error("  failed: %s: %s", outcome["overrides"] or outcome["run"], outcome["error"])
