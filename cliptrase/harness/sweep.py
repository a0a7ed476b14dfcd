"""A sweep that survives a bad cell: failed jobs are recorded, the others run, and the end says which failed.

In a ``-m`` multirun, :func:`run_job` runs each job through :func:`cliptrase.harness.run.run_safely` (the
code path ``cliptrase reproduce`` uses too): a job's error is logged (one line for a user error, the
traceback for a programming error) and recorded in the cell's ``failed.json``
(:mod:`cliptrase.records.failures`); one outcome line goes into the sweep folder, and the launcher goes
on with the next cell.
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
from omegaconf import DictConfig

from cliptrase.harness.run import FAILED, run_locked, run_safely
from cliptrase.harness.runtime import is_main_process
from cliptrase.utils.fs import atomic_write_text

logger = logging.getLogger("cliptrase.eval")

OUTCOMES_DIR = "outcomes"
"""Folder of the Hydra sweep directory holding one ``<job number>.json`` per finished job."""

FAILED_CELLS: list[dict[str, str]] = []
"""Failed cells of the last multirun in this process, filled by :class:`SweepSummary` at its end."""


def in_multirun() -> bool:
    """Whether this job is one cell of a ``-m`` sweep."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(cfg: DictConfig) -> dict | None:
    """The job of ``cliptrase-eval``: :func:`~cliptrase.harness.run.run_locked`, and in a sweep
    :func:`~cliptrase.harness.run.run_safely` (a failing cell is recorded, the launcher goes on).

    Returns:
        The metrics; None, in a sweep, when the job failed (recorded).

    Raises:
        Exception: outside a sweep, the job's error, unchanged (the error boundary reports it).
    """
    if not in_multirun():
        return run_locked(cfg).metrics
    outcome = run_safely(cfg)
    if outcome.status == FAILED:
        _note_outcome(cfg, "failed", outcome.error, outcome.run)
    else:
        _note_outcome(cfg, "ok", "")
    return outcome.metrics


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
