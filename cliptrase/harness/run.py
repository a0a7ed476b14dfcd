"""One job end to end: validate, resume or evaluate, write the result record with provenance.

:func:`run` is the bare job. :func:`run_locked` holds the lock of the job's config hash around it, and
:func:`run_safely` also turns a failure into a ``failed.json`` record instead of an exception: the one way
``cliptrase-eval -m`` sweeps (:mod:`cliptrase.harness.sweep`) and ``cliptrase reproduce``
(:mod:`cliptrase.reproduce.jobs`) run a job among others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cliptrase.config import validate
from cliptrase.datasets.label_check import InvalidLabelCounter
from cliptrase.errors import USER_ERRORS, message_of
from cliptrase.harness.evaluate import evaluate
from cliptrase.harness.identity import config_hash_of, row_label, run_name_of
from cliptrase.harness.runtime import is_main_process, resolve_precision, seed_everything, world_size
from cliptrase.records.failures import FailedRecord, clear_failure, write_failure
from cliptrase.records.provenance import collect_provenance
from cliptrase.records.results import ResultRecord, find_complete, write_record
from cliptrase.utils.fs import ensure_writable
from cliptrase.utils.locks import held, job_lock

logger = logging.getLogger("cliptrase.eval")

EVALUATED = "evaluated"
SKIPPED = "skipped"
FAILED = "failed"


@dataclass(frozen=True)
class JobOutcome:
    """What became of one job.

    Attributes:
        status: :data:`EVALUATED`, :data:`SKIPPED` (a complete record with its config hash was reused) or
            :data:`FAILED` (recorded in ``failed.json`` by :func:`run_safely`).
        metrics: the job's metrics; None when it failed.
        run: its run folder name; empty when its config does not even resolve.
        error: the one-line message of a failed job.
    """

    status: str
    metrics: dict | None = None
    run: str = ""
    error: str = ""


def experiment_dir_of(cfg: DictConfig) -> Path:
    """``<paths.results_dir>/<experiment_name>``: where a job's run folder and the tables go."""
    return Path(cfg.paths.results_dir) / cfg.experiment_name


def run(cfg: DictConfig) -> dict | None:
    """Evaluate one configuration; returns the metrics (a complete earlier record's when it is reused)."""
    return _run(cfg).metrics


def _run(cfg: DictConfig) -> JobOutcome:
    groups = validate(cfg)
    resolve_precision(cfg)  # before the hash: the record and the row say which precision ran
    seed_everything(cfg.seed)  # before the model is built: random-weight models are reproducible
    experiment_dir = experiment_dir_of(cfg)
    digest = config_hash_of(cfg)
    run_name = run_name_of(cfg, digest)
    if cfg.results.resume and not cfg.results.overwrite:
        done = find_complete(experiment_dir, digest)
        if done is not None:
            logger.info("skip %s: complete result with config hash %s exists", run_name, digest)
            return JobOutcome(SKIPPED, done.metrics, run_name)
    out_dir = experiment_dir / run_name  # created when the record is written: a failed job leaves none
    ensure_writable(experiment_dir, "results directory", "set paths.results_dir=<writable dir>")
    logger.info("run %s (config hash %s) -> %s", run_name, digest, out_dir)
    logger.debug("resolved config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    invalid_labels = InvalidLabelCounter()  # allow_invalid_labels=true: what was left out, for the record
    metrics, per_class, n_images, device, model_info = evaluate(cfg, groups, run_name, [invalid_labels])
    record = ResultRecord(
        experiment=cfg.experiment_name,
        run=run_name,
        row=row_label(cfg),
        column=groups["dataset"].name,
        metric_definition=groups["protocol"].metric,
        metrics=metrics,
        class_names=per_class["class_names"],
        per_class={k: v for k, v in per_class.items() if k != "class_names"},
        config=OmegaConf.to_container(cfg, resolve=True),
        config_hash=digest,
        provenance=collect_provenance(
            device=device,
            n_images=n_images,
            wall_time_s=time.perf_counter() - t0,
            started_at=started,
            extra={"model": model_info, **invalid_labels.totals()},
        ),
    )
    if not is_main_process():  # under torchrun every rank has the gathered metrics; rank 0 writes them
        return JobOutcome(EVALUATED, metrics, run_name)
    path = write_record(record, out_dir, overwrite=bool(cfg.results.overwrite))
    logger.info("%s: %s -> %s", run_name, dict(metrics), path)
    return JobOutcome(EVALUATED, metrics, run_name)


def run_locked(cfg: DictConfig) -> JobOutcome:
    """:func:`run` holding the lock of the job's config hash; a success drops the cell's ``failed.json``.

    A second identical job (another process, or another node on a shared filesystem) waits here, then
    finds the first one's complete record and reuses it. Under torchrun the ranks of one job share the
    work, so none of them locks.

    Raises:
        Exception: the job's error, unchanged.
    """
    if world_size() > 1:
        return _run(cfg)
    try:
        resolve_precision(cfg)
        digest = config_hash_of(cfg)
    except Exception:  # a config that does not resolve: _run() reports it properly
        return _run(cfg)
    experiment_dir, run_name = experiment_dir_of(cfg), run_name_of(cfg, digest)
    with held(job_lock(experiment_dir, digest), f"the identical job {run_name}"):
        outcome = _run(cfg)
        clear_failure(experiment_dir / run_name)  # an earlier failure of this cell is now retried
    return outcome


def run_safely(cfg: DictConfig) -> JobOutcome:
    """:func:`run_locked`, with a failure logged and recorded (``failed.json``) instead of raised.

    A user error is logged as one line, a programming error with its traceback. An interrupt (Ctrl-C,
    SIGTERM) is not a failure of the job: it goes through.
    """
    try:
        return run_locked(cfg)
    except Exception as err:
        return record_failure(cfg, err)


def record_failure(cfg: DictConfig, err: Exception) -> JobOutcome:
    """Log ``err`` and write the job's ``failed.json`` (rank 0); the failed outcome."""
    line = message_of(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, USER_ERRORS):
        logger.error("cell failed: %s", line)
    else:
        logger.exception("cell failed with a programming error")
    run_name = _write_failure(cfg, err, line) if is_main_process() else None
    return JobOutcome(FAILED, None, run_name or "", line)


def _write_failure(cfg: DictConfig, err: Exception, line: str) -> str | None:
    """Write the job's ``failed.json``; None when the config cannot even be resolved (no run folder)."""
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
