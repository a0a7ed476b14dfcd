"""The end of ``cliptrase reproduce``: the experiment's table with published and Δ rows (the one table
writer, :func:`cliptrase.reporting.table_files.write_tables`), and the summary of every step per dataset with
measured vs published mIoU (docs/method.md §9.1 for ``paper``, docs/protocols.md §4a for ``standard``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cliptrase.reproduce.plan import DatasetReport, JobResult, Options


def write_table(experiment_dir: Path, jobs: Sequence[JobResult]) -> Path | None:
    """``table.{md,csv,png}`` of the experiment with published and Δ rows for this run's rows."""
    from cliptrase.reporting.published import PUBLISHED_MODEL
    from cliptrase.reporting.table_files import write_tables

    if not experiment_dir.is_dir() or not any(j.miou is not None or _failed(j) for j in jobs):
        return None
    models = {PUBLISHED_MODEL} | {j.row.split(" | ")[1] for j in jobs if j.row.count(" | ") >= 2}
    return write_tables(experiment_dir, published_models=models)[0]


def _failed(job: JobResult) -> bool:
    return job.status.startswith("failed")


def failed_markdown(jobs: Sequence[JobResult]) -> str:
    """The failed jobs of this run, one line each with its error; empty when none failed."""
    failed = [j for j in jobs if _failed(j)]
    if not failed:
        return ""
    lines = [
        f"## Failed cells ({len(failed)} of {len(jobs)})",
        "",
        "Each is recorded in `failed.json` in its run folder and shown as `failed` in the table. "
        "Fix the cause and re-run the same command: only failed and missing cells are evaluated again.",
        "",
    ]
    lines += [f"- {j.dataset}/{j.protocol}/{j.method}: {j.status.removeprefix('failed: ')}" for j in failed]
    return "\n".join(lines) + "\n"


def comparison_markdown(jobs: Sequence[JobResult]) -> str:
    """Measured mIoU beside the published one and the difference, one line per job of this run."""
    from cliptrase.reporting.published import SOURCES, published_numbers

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
    if failed_markdown(jobs):
        lines += ["", failed_markdown(jobs).rstrip("\n")]
    if opts.weights is not None or (opts.model and opts.model != "vit_b16_openai"):
        lines += [
            "",
            "Note: the published numbers are for OpenAI CLIP ViT-B/16; this run used another model.",
        ]
    if table is not None:
        lines += ["", f"Full table with published and Δ rows: `{table}`."]
    return "\n".join(lines) + "\n"
