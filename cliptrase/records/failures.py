"""Failed cells of a sweep: one ``failed.json`` per run folder; tables show the cell, a re-run retries it.

A job that fails (bad data, missing file, a crash) writes ``<run>/failed.json`` with the error line and the
resolved config instead of ``metrics.json``. It never counts as done
(:func:`~cliptrase.records.results.find_complete` reads only ``metrics.json``), so re-running the sweep
retries exactly the failed and missing cells; a later success removes the file. Written atomically like
every record.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cliptrase.records.results import METRICS_FILE, atomic_write_text, to_plain

logger = logging.getLogger(__name__)

FAILED_FILE = "failed.json"
FAILED_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FailedRecord:
    """One failed job: where it would have gone in the table, why it failed, and with what config.

    Attributes:
        experiment: experiment name (folder under ``results/``).
        run: run folder name.
        row: table row label.
        column: dataset name (table column).
        metric_definition: the protocol's metric (which table the cell belongs to).
        config_hash: the resume key of the job.
        error: the one-line message the user saw.
        error_type: the exception class name.
        config: the resolved config (JSON types).
        date: ISO-8601 time of the failure.
    """

    experiment: str
    run: str
    row: str
    column: str
    metric_definition: str
    config_hash: str
    error: str
    error_type: str
    config: dict[str, Any] = field(default_factory=dict)
    date: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self) -> str:
        data = {"schema_version": FAILED_SCHEMA_VERSION, "status": "failed", **asdict(self)}
        data["config"] = to_plain(self.config)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_failure(record: FailedRecord, out_dir: Path) -> Path:
    """Write ``out_dir/failed.json`` atomically (never next to a complete ``metrics.json``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FAILED_FILE
    atomic_write_text(path, record.to_json())
    return path


def clear_failure(out_dir: Path) -> None:
    """Remove the failure record of a run that has now succeeded."""
    (out_dir / FAILED_FILE).unlink(missing_ok=True)


def read_failure(path: Path) -> FailedRecord | None:
    """The failure record at ``path``; None (with a warning) when it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("schema_version"), data.pop("status")
        return FailedRecord(**data)
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("ignoring unreadable failure record %s: %s", path, err)
        return None


def load_failures(experiment_dir: Path) -> list[FailedRecord]:
    """Failure records of runs that have no complete result, sorted by run."""
    root = Path(experiment_dir)
    found = []
    for path in sorted({*root.glob(f"*/{FAILED_FILE}"), *root.glob(f"*/*/{FAILED_FILE}")}):
        if (path.parent / METRICS_FILE).is_file():
            continue  # a newer success
        record = read_failure(path)
        if record is not None:
            found.append(record)
    return found
