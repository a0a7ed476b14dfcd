"""The data steps of ``cliptrase reproduce``: download -> prepare -> check per dataset.

Every step skips what an earlier run finished (a ready marker per dataset once its check passed). The check
is ``cliptrase data check``'s own (:func:`cliptrase.datasets.prepare.check.check_dataset`), same verdict.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cliptrase.datasets.download import (
    PREPARED_BYTES,
    DownloadError,
    Manifest,
    ManualDownloadError,
    check_disk_space,
    fetch_source,
    human_bytes,
    raw_dir,
    required_bytes,
    sources_for,
)
from cliptrase.datasets.download.manifest import now_iso
from cliptrase.errors import USER_ERRORS, message_of
from cliptrase.reproduce.plan import READY_DIR, DatasetReport, Options, TableSpec, elapsed

if TYPE_CHECKING:
    from cliptrase.datasets.prepare.check import Problem

logger = logging.getLogger(__name__)


def _ready_marker(root: Path, name: str) -> Path:
    return root / READY_DIR / f"{name}.json"


def _to_prepare(spec: TableSpec, name: str) -> list[str]:
    """The dataset configs whose prepared copies evaluating ``name`` reads (itself plus extras)."""
    return [name, *dict(spec.extra_prepare).get(name, ())]


def plan_disk(spec: TableSpec, opts: Options) -> None:
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
    report.steps["download"] = f"done, {what}, {elapsed(t0)}"
    return True


def _prepare(spec: TableSpec, name: str, opts: Options, report: DatasetReport) -> bool:
    """Run the converters of ``name`` (and its extras); False when it cannot go on."""
    from cliptrase.datasets.prepare import prepare_dataset

    t0 = time.monotonic()
    try:
        for target in _to_prepare(spec, name):
            prepare_dataset(target, raw_dir(target, opts.root), opts.root, workers=opts.workers)
    except (*USER_ERRORS, RuntimeError, OSError) as err:
        report.steps["prepare"] = f"failed: {message_of(err)}"
        return False
    report.steps["prepare"] = f"done, {elapsed(t0)}"
    return True


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
    report.steps["check"] = f"passed, {elapsed(t0)}"
    for warning in warnings:
        logger.warning("%s", warning)
    report.notes.extend(warnings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    checked = {"dataset": name, "checked_at": now_iso(), "notes": warnings, "subset": opts.subset}
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
