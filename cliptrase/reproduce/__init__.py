"""``cliptrase reproduce paper|standard``: from an empty data root to measured beside published numbers.

    cliptrase reproduce paper [--datasets voc20 context59 ...] [--root DIR] [--results DIR]
                              [--model SLUG | --weights FILE] [--methods cliptrase ...] [--max-images N]
                              [--device cuda] [--mirror KEY=URL] [--delete-archives]

Per dataset: download (public archives; login-only ones say where to put theirs) -> prepare (the existing
converters) -> check -> evaluate (one Hydra-composed job per protocol and method: ``paper`` = the
``paper_table`` experiment at 224 and 336 px, ``standard`` = ``standard_table``) -> table. Every step skips
what an earlier run finished: verified archives and extraction markers, converted files, a ready marker per
dataset once its check passed, and complete result records (the eval's config-hash resume). The disk space
the whole request needs is checked before anything is fetched. One summary at the end lists every step per
dataset and puts the measured mIoU beside the published number (docs/method.md §9.1 for ``paper``,
docs/protocols.md §4a for ``standard``) with the difference; the experiment's ``table.md`` gets published
and Δ rows. :func:`reproduce` returns 0 when every dataset was evaluated, 1 when some wait for a manual
download or failed; bad input raises a :class:`~cliptrase.errors.UserError` (exit status 2 at the console).

Modules: :mod:`.spec` (tables, options, reports), :mod:`.data` (download -> prepare -> check),
:mod:`.jobs` (evaluate), :mod:`.summary` (table and summary); :func:`reproduce` runs them in order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from cliptrase.datasets.download import DATASET_SOURCES, downloadable_datasets, ensure_writable
from cliptrase.errors import ConfigError, ExitCode, UnknownNameError, WeightsNotFoundError
from cliptrase.paths import config_dir
from cliptrase.reproduce.data import plan_disk, prepare_data
from cliptrase.reproduce.jobs import evaluate_all, experiment_dir_of
from cliptrase.reproduce.plan import SUMMARY_NAME, TABLES, Options, TableSpec, elapsed
from cliptrase.reproduce.summary import summary_markdown, write_table
from cliptrase.utils.fs import atomic_write_text
from cliptrase.utils.fs import ensure_writable as fs_ensure_writable

logger = logging.getLogger(__name__)

__all__ = ["TABLES", "Options", "TableSpec", "reproduce"]


def _validate(opts: Options) -> tuple[TableSpec, Path]:
    """Fail fast, before anything is fetched: names, model, weights, methods, writable root and results.

    Returns the table spec and the experiment's results folder (composing one job also validates the
    config groups).
    """
    spec = TABLES[opts.table]
    unknown = [d for d in opts.datasets if d not in DATASET_SOURCES]
    if unknown:
        raise UnknownNameError(f"unknown dataset {unknown[0]!r}; valid: {', '.join(downloadable_datasets())}")
    for group, names in (("method", opts.methods), ("model", [opts.model] if opts.model else [])):
        for name in names:
            if not (config_dir() / group / f"{name}.yaml").is_file():
                valid = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
                raise UnknownNameError(f"unknown {group} {name!r}; valid: {', '.join(valid)}")
    if opts.model and opts.weights:
        raise ConfigError("give --model or --weights, not both")
    if opts.weights is not None and not opts.weights.is_file():
        raise WeightsNotFoundError(
            f"weights file {opts.weights} not found; give an OpenAI-format CLIP state dict"
        )
    ensure_writable(opts.root)
    experiment_dir = experiment_dir_of(spec, opts)
    fs_ensure_writable(experiment_dir, "results directory", "choose another with --results")
    return spec, experiment_dir


def reproduce(opts: Options) -> int:
    """Run the whole pipeline for ``opts``; returns the exit status (:class:`~cliptrase.errors.ExitCode`)."""
    t0 = time.monotonic()
    opts.methods = opts.methods or list(TABLES[opts.table].methods)
    spec, experiment_dir = _validate(opts)
    plan_disk(spec, opts)
    reports = prepare_data(spec, opts)
    jobs = evaluate_all(spec, opts, reports)
    table = write_table(experiment_dir, jobs)
    summary = summary_markdown(opts, reports, jobs, table, elapsed(t0))
    atomic_write_text(experiment_dir / SUMMARY_NAME, summary)
    logger.info("summary (also in %s)\n%s", experiment_dir / SUMMARY_NAME, summary)
    return ExitCode.INCOMPLETE if any(not r.ready or r.failed for r in reports) else ExitCode.OK
