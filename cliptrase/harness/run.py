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

from omegaconf import DictConfig, OmegaConf

from cliptrase.datasets.label_check import InvalidLabelCounter
from cliptrase.errors import USER_ERRORS, message_of
from cliptrase.harness.evaluate import evaluate
from cliptrase.harness.identity import JobIdentity, job_identity
from cliptrase.harness.job import Job, resolve_job
from cliptrase.harness.runtime import is_main_process, seed_everything, world_size
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
        row: its table row label; empty when its config does not even resolve.
    """

    status: str
    metrics: dict | None = None
    run: str = ""
    error: str = ""
    row: str = ""


def run(cfg: DictConfig) -> dict | None:
    """Evaluate one configuration; returns the metrics (a complete earlier record's when it is reused)."""
    return _run(cfg, resolve_job(cfg)).metrics


def _run(cfg: DictConfig, job: Job) -> JobOutcome:
    groups, identity = job.groups, job.identity
    seed_everything(cfg.seed)  # before the model is built: random-weight models are reproducible
    experiment_dir, digest, run_name = identity.experiment_dir, identity.config_hash, identity.run_name
    if cfg.results.resume and not cfg.results.overwrite:
        done = find_complete(experiment_dir, digest)
        if done is not None:
            logger.info("skip %s: complete result with config hash %s exists", run_name, digest)
            return JobOutcome(SKIPPED, done.metrics, run_name, row=identity.row)
    out_dir = identity.run_dir  # created when the record is written: a failed job leaves none
    ensure_writable(experiment_dir, "results directory", "set paths.results_dir=<writable dir>")
    logger.info("run %s (config hash %s) -> %s", run_name, digest, out_dir)
    logger.debug("resolved config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    invalid_labels = InvalidLabelCounter()  # allow_invalid_labels=true: what was left out, for the record
    metrics, per_class, n_images, device, model_info = evaluate(cfg, groups, job, [invalid_labels])
    record = ResultRecord(
        experiment=cfg.experiment_name,
        run=run_name,
        row=identity.row,
        column=job.dataset.name,
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
        return JobOutcome(EVALUATED, metrics, run_name, row=identity.row)
    path = write_record(record, out_dir, overwrite=bool(cfg.results.overwrite))
    logger.info("%s: %s -> %s", run_name, dict(metrics), path)
    return JobOutcome(EVALUATED, metrics, run_name, row=identity.row)


def run_locked(cfg: DictConfig, job: Job | None = None) -> JobOutcome:
    """:func:`run` holding the lock of the job's config hash; a success drops the cell's ``failed.json``.

    A second identical job (another process, or another node on a shared filesystem) waits here, then
    finds the first one's complete record and reuses it. Under torchrun the ranks of one job share the
    work, so none of them locks.

    Args:
        cfg: the composed eval config.
        job: ``cfg`` resolved (:func:`~cliptrase.harness.job.resolve_job`); resolved here when None.

    Raises:
        Exception: the job's error, unchanged.
    """
    job = job or resolve_job(cfg)
    if world_size() > 1:
        return _run(cfg, job)
    identity = job.identity
    lock = job_lock(identity.experiment_dir, identity.config_hash)
    with held(lock, f"the identical job {identity.run_name}"):
        outcome = _run(cfg, job)
        clear_failure(identity.run_dir)  # an earlier failure of this cell is now retried
    return outcome


def run_safely(cfg: DictConfig) -> JobOutcome:
    """:func:`run_locked`, with a failure logged and recorded (``failed.json``) instead of raised.

    A user error is logged as one line, a programming error with its traceback. An interrupt (Ctrl-C,
    SIGTERM) is not a failure of the job: it goes through.
    """
    job = None
    try:
        job = resolve_job(cfg)  # identity and dataset facts, once, passed down from here
        return run_locked(cfg, job)
    except Exception as err:
        return record_failure(cfg, err, job.identity if job is not None else None)


def record_failure(cfg: DictConfig, err: Exception, identity: JobIdentity | None = None) -> JobOutcome:
    """Log ``err`` and write the job's ``failed.json`` (rank 0); the failed outcome.

    ``identity`` is the job's, when it was resolved before the failure (else it is resolved here, if the
    config allows it)."""
    line = message_of(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, USER_ERRORS):
        logger.error("cell failed: %s", line)
    else:
        logger.exception("cell failed with a programming error")
    if is_main_process():
        identity = _write_failure(cfg, err, line, identity)
    if identity is None:
        return JobOutcome(FAILED, None, "", line)
    return JobOutcome(FAILED, None, identity.run_name, line, identity.row)


def _write_failure(
    cfg: DictConfig, err: Exception, line: str, identity: JobIdentity | None
) -> JobIdentity | None:
    """Write the job's ``failed.json``; returns the job's identity, None when the config cannot even be
    resolved (no run folder)."""
    try:
        identity = identity or job_identity(cfg)
        record = FailedRecord(
            experiment=str(cfg.experiment_name),
            run=identity.run_name,
            row=identity.row,
            column=str(cfg.dataset.name),
            metric_definition=str(cfg.protocol.metric),
            config_hash=identity.config_hash,
            error=line,
            error_type=type(err).__name__,
            config=OmegaConf.to_container(cfg, resolve=True),
        )
        path = write_failure(record, identity.run_dir)
    except Exception as write_err:  # the config itself is broken, or the disk: the summary still says it
        logger.warning("could not record the failed cell: %s", message_of(write_err))
        return None
    logger.info("recorded the failed cell in %s", path)
    return identity
