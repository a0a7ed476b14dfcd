"""One job end to end: validate, resume or evaluate, write the result record with provenance."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cliptrase.config import validate
from cliptrase.datasets.label_check import InvalidLabelCounter
from cliptrase.evaluation.provenance import collect_provenance
from cliptrase.evaluation.results import ResultRecord, find_complete, write_record
from cliptrase.harness.evaluate import evaluate
from cliptrase.harness.identity import config_hash_of, row_label, run_name_of
from cliptrase.harness.runtime import is_main_process, seed_everything
from cliptrase.utils.fs import ensure_writable

logger = logging.getLogger("cliptrase.eval")


def experiment_dir_of(cfg: DictConfig) -> Path:
    """``<paths.results_dir>/<experiment_name>``: where a job's run folder and the tables go."""
    return Path(cfg.paths.results_dir) / cfg.experiment_name


def run(cfg: DictConfig) -> dict | None:
    """Evaluate one configuration; returns the metrics (None when skipped as already complete)."""
    groups = validate(cfg)
    seed_everything(cfg.seed)  # before the model is built: random-weight models are reproducible
    experiment_dir = experiment_dir_of(cfg)
    digest = config_hash_of(cfg)
    run_name = run_name_of(cfg, digest)
    if cfg.results.resume and not cfg.results.overwrite:
        done = find_complete(experiment_dir, digest)
        if done is not None:
            logger.info("skip %s: complete result with config hash %s exists", run_name, digest)
            return done.metrics
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
        return metrics
    path = write_record(record, out_dir, overwrite=bool(cfg.results.overwrite))
    logger.info("%s: %s -> %s", run_name, dict(metrics), path)
    return metrics
