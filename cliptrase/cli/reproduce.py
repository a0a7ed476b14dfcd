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
and Δ rows. Exit status: 0 when every dataset was evaluated, 1 when some wait for a manual download or failed,
2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cliptrase.cli.data import parse_mirrors
from cliptrase.datasets.base import default_data_root
from cliptrase.datasets.download import (
    PREPARED_BYTES,
    DownloadError,
    FreeBytes,
    Manifest,
    ManualDownloadError,
    check_disk_space,
    ensure_writable,
    fetch_source,
    human_bytes,
    raw_dir,
    required_bytes,
    sources_for,
)
from cliptrase.evaluation.tables import STANDARD_BENCHMARKS
from cliptrase.harness.compose import compose_job
from cliptrase.utils import fs

if TYPE_CHECKING:
    from cliptrase.datasets.prepare.check import Problem

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_BAD_INPUT = 2
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


TABLES: dict[str, TableSpec] = {
    "paper": TableSpec(
        experiment="paper_table",
        protocols=("paper224", "paper336"),
        datasets=(
            "voc20",
            "voc21",
            "coco_object",
            "coco_stuff171",
            "context59",
            "context60",
            "context459",
            "ade150",
            "ade847",
        ),
        # The authors score COCO-Object on the 171-class maps (protocols/paper.py PAPER_GT): prepare both.
        extra_prepare=(("coco_object", ("coco_stuff171",)),),
    ),
    "standard": TableSpec(
        experiment="standard_table",
        protocols=("standard",),
        datasets=STANDARD_BENCHMARKS,
    ),
}
"""``paper``: the authors' README table (configs/experiment/paper_table.yaml); ``standard``: the field's
8-benchmark table (configs/experiment/standard_table.yaml)."""


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


def _elapsed(t0: float) -> str:
    seconds = time.monotonic() - t0
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ------------------------------------------------------------------------------------------- validation


def _validate(opts: Options) -> tuple[TableSpec, Path]:
    """Fail fast, before anything is fetched: names, model, weights, methods, writable root and results.

    Returns the table spec and the experiment's results folder (composing one job also validates the
    config groups).
    """
    from cliptrase.datasets.config import config_dir
    from cliptrase.datasets.download import DATASET_SOURCES

    spec = TABLES[opts.table]
    unknown = [d for d in opts.datasets if d not in DATASET_SOURCES]
    if unknown:
        raise KeyError(f"unknown dataset {unknown[0]!r}; valid: {', '.join(sorted(DATASET_SOURCES))}")
    for group, names in (("method", opts.methods), ("model", [opts.model] if opts.model else [])):
        for name in names:
            if not (config_dir() / group / f"{name}.yaml").is_file():
                valid = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
                raise KeyError(f"unknown {group} {name!r}; valid: {', '.join(valid)}")
    if opts.model and opts.weights:
        raise ValueError("give --model or --weights, not both")
    if opts.weights is not None and not opts.weights.is_file():
        raise FileNotFoundError(
            f"weights file {opts.weights} not found; give an OpenAI-format CLIP state dict"
        )
    ensure_writable(opts.root)
    experiment_dir = experiment_dir_of(spec, opts)
    fs.ensure_writable(experiment_dir, "results directory", "choose another with --results")
    return spec, experiment_dir


# ------------------------------------------------------------------------------------------------- data


def _ready_marker(root: Path, name: str) -> Path:
    return root / READY_DIR / f"{name}.json"


def _to_prepare(spec: TableSpec, name: str) -> list[str]:
    """The dataset configs whose prepared copies evaluating ``name`` reads (itself plus extras)."""
    return [name, *dict(spec.extra_prepare).get(name, ())]


def _plan_disk(spec: TableSpec, opts: Options) -> None:
    """Check the space still needed by every dataset not ready yet, before anything is fetched."""
    pending = [n for n in opts.datasets if not _ready_marker(opts.root, n).is_file()]
    needed = required_bytes(opts.root, sources_for(pending))
    needed += sum(PREPARED_BYTES[p] for n in pending for p in _to_prepare(spec, n))
    check_disk_space(opts.root, needed, free_bytes=opts.free_bytes, what="archives, extraction, converted")
    logger.info(
        "disk: up to %s needed under %s for %d dataset(s) not ready yet",
        human_bytes(needed),
        opts.root,
        len(pending),
    )


def _check_all(spec: TableSpec, name: str, opts: Options) -> tuple[list[str], list[tuple[str, Problem]]]:
    """``cliptrase data check`` of every prepared copy ``name`` reads: (notes, (target, problem) pairs).

    The same function and verdict as ``data check``: an image count other than the official one is a
    problem unless ``--subset`` says the copy is a deliberate subset (then it is a note, and the summary
    says the numbers are not comparable).
    """
    from cliptrase.datasets.prepare.check import check_dataset

    notes, problems = [], []
    for target in _to_prepare(spec, name):
        report = check_dataset(target, opts.root, expected=0 if opts.subset else None, workers=opts.workers)
        notes += [f"{target}: {note}" for note in report.notes]
        problems += [(target, p) for p in report.problems]
    return notes, problems


def _download(name: str, opts: Options, report: DatasetReport, fetched: set[str]) -> bool:
    """Fetch the sources of ``name`` not handled earlier in this run; False when it cannot go on."""
    t0, bytes_in = time.monotonic(), 0
    manifest = Manifest(opts.root)
    try:
        for source in sources_for([name]):
            if source.key in fetched:
                continue
            outcome = fetch_source(
                source,
                opts.root,
                mirrors=opts.mirrors,
                free_bytes=opts.free_bytes,
                keep_archives=opts.keep_archives,
                manifest=manifest,
            )
            fetched.add(source.key)
            bytes_in += outcome.fetched_bytes
    except ManualDownloadError as err:
        report.steps["download"] = "waiting for a manual download (see the instructions above)"
        for line in err.instructions:
            logger.warning("%s", line)
        report.notes.extend(err.instructions)
        return False
    except DownloadError as err:
        report.steps["download"] = f"failed: {err}"
        return False
    what = f"{human_bytes(bytes_in)} fetched" if bytes_in else "nothing fetched (verified)"
    report.steps["download"] = f"done, {what}, {_elapsed(t0)}"
    return True


def _prepare(spec: TableSpec, name: str, opts: Options, report: DatasetReport) -> bool:
    """Run the converters of ``name`` (and its extras); False when it cannot go on."""
    from cliptrase.datasets.prepare import prepare_dataset

    t0 = time.monotonic()
    try:
        for target in _to_prepare(spec, name):
            prepare_dataset(target, raw_dir(target, opts.root), opts.root, workers=opts.workers)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        report.steps["prepare"] = f"failed: {message}"
        return False
    report.steps["prepare"] = f"done, {_elapsed(t0)}"
    return True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _data_step(spec: TableSpec, name: str, opts: Options, report: DatasetReport, fetched: set[str]) -> bool:
    """Download, prepare and check ``name`` unless a checked copy exists; True when it can be evaluated."""
    marker = _ready_marker(opts.root, name)
    if marker.is_file() and (opts.subset or not json.loads(marker.read_text()).get("subset")):
        report.steps["data"] = f"ready (checked earlier; delete {marker} to re-check)"
        report.notes.extend(json.loads(marker.read_text()).get("notes", []))
        return True
    t0 = time.monotonic()
    warnings, problems = _check_all(spec, name, opts)
    if all(p.kind == "count" for _, p in problems):  # none, or a complete copy of another size: kept
        report.steps["download"] = report.steps["prepare"] = "skipped (a prepared copy exists)"
    else:
        if not (_download(name, opts, report, fetched) and _prepare(spec, name, opts, report)):
            return False
        t0 = time.monotonic()
        warnings, problems = _check_all(spec, name, opts)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        target, first = problems[0]
        report.steps["check"] = f"failed: {target}: {first}{more}; run `cliptrase data check {target}`"
        return False
    report.steps["check"] = f"passed, {_elapsed(t0)}"
    for warning in warnings:
        logger.warning("%s", warning)
    report.notes.extend(warnings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    checked = {"dataset": name, "checked_at": _now(), "notes": warnings, "subset": opts.subset}
    marker.write_text(json.dumps(checked) + "\n")
    return True


def prepare_data(spec: TableSpec, opts: Options) -> list[DatasetReport]:
    """Bring every requested dataset to a checked, prepared copy under the data root; skip finished steps."""
    reports: list[DatasetReport] = []
    fetched: set[str] = set()
    for i, name in enumerate(opts.datasets, 1):
        logger.info("[%d/%d] %s: data (download -> prepare -> check)", i, len(opts.datasets), name)
        report = DatasetReport(name)
        report.ready = _data_step(spec, name, opts, report, fetched)
        report.failed = not report.ready
        reports.append(report)
    return reports


# --------------------------------------------------------------------------------------------- evaluate


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

    from cliptrase.evaluation.results import find_complete
    from cliptrase.harness.identity import config_hash_of, row_label
    from cliptrase.harness.run import run

    experiment_dir = Path(cfg.paths.results_dir) / cfg.experiment_name
    if find_complete(experiment_dir, config_hash_of(cfg)) is not None:
        status = "complete result found, skipped"
    else:
        logger.info("%s evaluating %s/%s/%s", position, dataset, protocol, method)
        status = "evaluated"
    try:
        with torch.no_grad():
            metrics = run(cfg) or {}
    except (FileNotFoundError, ValueError, KeyError, RuntimeError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
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
        report.steps["evaluate"] = "; ".join(statuses) + f" ({_elapsed(t0)})"
    return jobs


# ------------------------------------------------------------------------------------------------ table


def write_table(experiment_dir: Path, jobs: Sequence[JobResult]) -> Path | None:
    """``table.{md,csv,png}`` of the experiment with published and Δ rows for this run's rows."""
    from cliptrase.evaluation.published import PUBLISHED_MODEL
    from cliptrase.harness.tables import write_tables

    if not experiment_dir.is_dir() or not any(j.miou is not None for j in jobs):
        return None
    models = {PUBLISHED_MODEL} | {j.row.split(" | ")[1] for j in jobs if j.row.count(" | ") >= 2}
    return write_tables(experiment_dir, published_models=models)[0]


def comparison_markdown(jobs: Sequence[JobResult]) -> str:
    """Measured mIoU beside the published one and the difference, one line per job of this run."""
    from cliptrase.evaluation.published import SOURCES, published_numbers

    lines = [
        "| dataset | protocol | method | measured mIoU | published | Δ | status |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    sources = set()
    for job in jobs:
        ref = (published_numbers(job.method, job.protocol) or {}).get(job.dataset)
        if ref is not None:
            sources.add(SOURCES[(job.method, job.protocol)])
        measured = "—" if job.miou is None else f"{job.miou:.2f}"
        delta = "—" if job.miou is None or ref is None else f"{job.miou - ref:+.2f}"
        published = "—" if ref is None else f"{ref:.2f}"
        cells = (job.dataset, job.protocol, job.method, measured, published, delta, job.status)
        lines.append("| " + " | ".join(cells) + " |")
    if sources:
        lines += ["", "Published: " + "; ".join(sorted(sources)) + "."]
    return "\n".join(lines) + "\n"


def summary_markdown(
    opts: Options, reports: Sequence[DatasetReport], jobs: Sequence[JobResult], table: Path | None, wall: str
) -> str:
    """The end-of-run summary: steps per dataset, measured vs published, where the files are."""
    lines = [
        f"# cliptrase reproduce {opts.table}",
        "",
        f"Data root: `{opts.root}`; wall time {wall}.",
        "",
        "## Steps",
        "",
    ]
    for report in reports:
        state = "ready" if report.ready and not report.failed else "INCOMPLETE"
        lines.append(
            f"- **{report.name}** ({state}): " + "; ".join(f"{k}: {v}" for k, v in report.steps.items())
        )
        lines += [f"  - {note}" for note in report.notes]
    lines += ["", "## Measured vs published (mIoU %)", "", comparison_markdown(jobs).rstrip("\n")]
    if opts.weights is not None or (opts.model and opts.model != "vit_b16_openai"):
        lines += [
            "",
            "Note: the published numbers are for OpenAI CLIP ViT-B/16; this run used another model.",
        ]
    if table is not None:
        lines += ["", f"Full table with published and Δ rows: `{table}`."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- driver


def reproduce(opts: Options) -> int:
    """Run the whole pipeline for ``opts``; returns the exit status (see the module docstring)."""
    from cliptrase.evaluation.results import atomic_write_text

    t0 = time.monotonic()
    opts.methods = opts.methods or list(TABLES[opts.table].methods)
    spec, experiment_dir = _validate(opts)
    _plan_disk(spec, opts)
    reports = prepare_data(spec, opts)
    jobs = evaluate_all(spec, opts, reports)
    table = write_table(experiment_dir, jobs)
    summary = summary_markdown(opts, reports, jobs, table, _elapsed(t0))
    atomic_write_text(experiment_dir / SUMMARY_NAME, summary)
    logger.info("summary (also in %s)\n%s", experiment_dir / SUMMARY_NAME, summary)
    return EXIT_INCOMPLETE if any(not r.ready or r.failed for r in reports) else EXIT_OK


def _run(args: argparse.Namespace) -> int:
    spec = TABLES[args.table]
    try:
        opts = Options(
            table=args.table,
            datasets=list(args.datasets or spec.datasets),
            root=Path(args.root) if args.root is not None else default_data_root(),
            results_dir=args.results,
            model=args.model,
            weights=args.weights,
            methods=list(args.methods or spec.methods),
            max_images=args.max_images,
            device=args.device,
            mirrors=parse_mirrors(args.mirror),
            keep_archives=not args.delete_archives,
            workers=args.workers,
            subset=args.subset,
        )
        return reproduce(opts)
    except (FileNotFoundError, ValueError, KeyError, PermissionError, DownloadError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        logger.error("reproduce %s: %s", args.table, message)
        return EXIT_BAD_INPUT


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reproduce`` command to ``subparsers`` (the ``cliptrase`` entry point)."""
    parser = subparsers.add_parser(
        "reproduce", help="download -> prepare -> check -> evaluate -> table, beside the published numbers"
    )
    parser.add_argument(
        "table",
        choices=sorted(TABLES),
        help="paper: the authors' README table; standard: the field's mmseg-protocol table",
    )
    parser.add_argument("--datasets", nargs="+", metavar="NAME", help="subset (default: all of the table)")
    parser.add_argument(
        "--root", type=Path, default=None, help="data root (default: $CLIPTRASE_DATA or ./data)"
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="results dir (default: $CLIPTRASE_RESULTS or ./results)"
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--model", default=None, help="model config (default: the experiment's, vit_b16_openai)"
    )
    model.add_argument(
        "--weights", type=Path, default=None, help="OpenAI-format CLIP state dict (model=weights_file)"
    )
    parser.add_argument("--methods", nargs="+", default=None, help="method configs (default: cliptrase)")
    parser.add_argument(
        "--max-images", type=int, default=None, help="evaluate only the first N images (smoke runs)"
    )
    parser.add_argument("--device", default=None, help="auto (default), cpu or cuda[:i]")
    parser.add_argument(
        "--mirror", action="append", metavar="KEY=URL", help="as in `cliptrase data download`"
    )
    parser.add_argument("--delete-archives", action="store_true", help="delete archives once extracted")
    parser.add_argument(
        "--workers", type=int, default=None, help="converter/check processes (default: cores, max 8)"
    )
    parser.add_argument(
        "--subset",
        action="store_true",
        help="prepared copies are deliberate subsets: any image count passes (as `data check --subset`)",
    )
    parser.set_defaults(func=_run)
