"""One JSON record per evaluation run: numbers, the config that made them, and where they came from.

A run writes ``results/<experiment>/<run>/metrics.json`` and ``per_class.csv`` (docs/style.md §3.9). Both are
written atomically (temp file in the same directory + ``os.replace``) so an interrupted job never leaves a
half-written file that looks like a result. ``metrics.json`` is written last: its presence, with
``complete: true``, is what marks a run as done. A sweep re-run skips every job whose config hash already has
a complete record (:func:`find_complete`), and an existing complete record is never replaced unless the caller
asks for it (:class:`ResultExistsError`).

Tables are derived from these records (:mod:`cliptrase.reporting.tables`), never parsed from logs; the
provenance block is collected by :mod:`cliptrase.records.provenance`. ``atomic_write_bytes`` and
``atomic_write_text`` are :mod:`cliptrase.utils.fs`'s, re-exported here for the modules that write next to
records.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cliptrase.utils.fs import atomic_write_bytes as atomic_write_bytes
from cliptrase.utils.fs import atomic_write_text as atomic_write_text

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PER_CLASS_FILE = "per_class.csv"
SCHEMA_VERSION = 1
"""Version of the JSON layout; bumped on incompatible changes so old readers fail clearly."""

HASH_LENGTH = 16
DEFAULT_HASH_EXCLUDE: tuple[str, ...] = ("paths", "hydra", "runtime", "results", "save_predictions")
"""Top-level config keys that never change the numbers (where files go, logging, overwrite policy, saving
label PNGs), so two runs differing only in them share a hash and resume across machines."""


class ResultExistsError(FileExistsError):
    """A complete result is already on disk and the caller did not ask to overwrite it."""


@dataclass
class ResultRecord:
    """The outcome of one evaluation run (one row label x one dataset), with its provenance.

    Attributes:
        experiment: experiment name (the folder under ``results/``).
        run: run folder name inside the experiment folder.
        row: table row label, e.g. ``"cliptrase | ViT-B-16/openai"`` or an ablation label.
        column: dataset name (config stem, e.g. ``"voc21"``): the table column.
        metric_definition: which metric produced the numbers (``"mmseg_iou"`` or ``"paper_scores"``);
            tables never mix definitions.
        metrics: summary metrics in percent, e.g. ``{"mIoU": 41.2, "aAcc": 80.1}``; NaN allowed.
        class_names: class names in label order.
        per_class: per-class series in label order, e.g. ``{"IoU": [...], "Acc": [...]}``; NaN for classes
            absent from GT and predictions (stored as JSON ``null``).
        config: the resolved config, JSON-compatible.
        config_hash: :func:`config_hash` of ``config``; the resume key.
        provenance: :func:`collect_provenance` output.
        complete: False for a placeholder written before the run finished; such records never count as done.
    """

    experiment: str
    run: str
    row: str
    column: str
    metric_definition: str
    metrics: dict[str, float]
    class_names: list[str]
    per_class: dict[str, list[float]]
    config: dict[str, Any]
    config_hash: str
    provenance: dict[str, Any] = field(default_factory=dict)
    complete: bool = True

    def __post_init__(self) -> None:
        # Plain JSON types from the start: the file then holds exactly what was hashed, and a value JSON
        # cannot hold fails here, not after the evaluation when the record is written.
        self.config = to_plain(self.config) if isinstance(self.config, Mapping) else self.config
        self.provenance = (
            to_plain(self.provenance) if isinstance(self.provenance, Mapping) else self.provenance
        )
        problem = _record_problem(self)
        if problem:
            raise ValueError(f"invalid result record: {problem}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: NaN becomes ``null`` so the file is strict JSON other tools can read."""
        data = dataclasses.asdict(self)
        data["metrics"] = {k: _nan_to_none(v) for k, v in self.metrics.items()}
        data["per_class"] = {k: [_nan_to_none(v) for v in vs] for k, vs in self.per_class.items()}
        return {"schema_version": SCHEMA_VERSION, **data}

    def to_json(self) -> str:
        """Indented, key-sorted strict JSON (``allow_nan=False``), newline-terminated."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str | Path = "<string>") -> ResultRecord:
        """Parse and validate; any problem is a one-line ``ValueError`` naming ``source`` and the problem."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, found {type(data).__name__}")
        version = data.pop("schema_version", None)
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"{source}: schema_version {version!r} is not {SCHEMA_VERSION}; re-run the evaluation "
                "with this version of cliptrase"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - data.keys())
        if missing:
            raise ValueError(f"{source}: missing field(s) {', '.join(missing)}")
        unknown = sorted(data.keys() - names)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**_restore_nans(data))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from None


def _nan_to_none(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def _restore_nans(data: dict[str, Any]) -> dict[str, Any]:
    """Turn the ``null`` entries of ``metrics`` and ``per_class`` back into NaN."""
    out = dict(data)
    if isinstance(out.get("metrics"), dict):
        out["metrics"] = {k: math.nan if v is None else v for k, v in out["metrics"].items()}
    if isinstance(out.get("per_class"), dict):
        out["per_class"] = {
            k: [math.nan if v is None else v for v in vs] if isinstance(vs, list) else vs
            for k, vs in out["per_class"].items()
        }
    return out


def _is_number(value: object) -> bool:
    """An int or float that is not infinite (NaN allowed: it marks an undefined score)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isinf(value)


def _record_problem(rec: ResultRecord) -> str | None:
    """The first thing wrong with ``rec``, or None; shared by construction and file loading."""
    for name in ("experiment", "run", "row", "column", "metric_definition", "config_hash"):
        value = getattr(rec, name)
        if not isinstance(value, str) or not value:
            return f"{name} must be a non-empty string, found {value!r}"
    if not isinstance(rec.metrics, dict) or not all(
        isinstance(k, str) and _is_number(v) for k, v in rec.metrics.items()
    ):
        return "metrics must map names to numbers"
    if not isinstance(rec.class_names, list) or not all(isinstance(c, str) for c in rec.class_names):
        return "class_names must be a list of strings"
    if not isinstance(rec.per_class, dict):
        return "per_class must map series names to lists"
    for key, series in rec.per_class.items():
        if not isinstance(series, list) or not all(_is_number(v) for v in series):
            return f"per_class[{key!r}] must be a list of numbers"
        if len(series) != len(rec.class_names):
            return f"per_class[{key!r}] has {len(series)} values for {len(rec.class_names)} classes"
    for name in ("config", "provenance"):
        if not isinstance(getattr(rec, name), dict):
            return f"{name} must be an object"
    if not isinstance(rec.complete, bool):
        return f"complete must be true or false, found {rec.complete!r}"
    return None


# ---------------------------------------------------------------------------------------------- config hash


def config_hash(cfg: Mapping[str, Any], *, exclude: Iterable[str] = DEFAULT_HASH_EXCLUDE) -> str:
    """First 16 hex digits of the sha256 of the canonical JSON of ``cfg`` without the ``exclude`` keys.

    Canonical means sorted keys and compact separators, so key order never changes the hash. ``exclude``
    holds dotted paths from the root (``"paths"``, ``"dataset.data_root"``); keys absent from ``cfg`` are
    ignored. The hash is the resume key: two configs hash equal exactly when they should give equal numbers.

    Raises:
        ValueError: a value is not representable in JSON (names its dotted key).
    """
    plain = to_plain(cfg)
    for dotted in exclude:
        _drop(plain, dotted.split("."))
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def to_plain(value: Any, key: str = "") -> Any:
    """``value`` as plain JSON types: mappings -> dict, sequences -> list, paths -> str, enums -> name.

    Works on resolved OmegaConf containers too (they are ``Mapping``/``Sequence``), so the record stores the
    config exactly as hashed.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"config value {key or '<root>'} is {value}; configs must hold finite numbers")
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [to_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    raise ValueError(
        f"config value {key or '<root>'} has type {type(value).__name__}, which JSON cannot hold; "
        "resolve the config (OmegaConf.to_container(cfg, resolve=True)) before hashing"
    )


def _drop(tree: Any, parts: list[str]) -> None:
    if not isinstance(tree, dict) or parts[0] not in tree:
        return
    if len(parts) == 1:
        del tree[parts[0]]
    else:
        _drop(tree[parts[0]], parts[1:])


# ------------------------------------------------------------------------------------------- reading/writing


def read_record(path: Path) -> ResultRecord:
    """Load and validate one ``metrics.json``; one-line ``ValueError``/``OSError`` naming ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    return ResultRecord.from_json(text, source=path)


def per_class_csv(record: ResultRecord) -> str:
    """``class,<series...>`` rows in label order; NaN is an empty cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    series = list(record.per_class)
    writer.writerow(["class", *series])
    for i, name in enumerate(record.class_names):
        values = (record.per_class[s][i] for s in series)
        writer.writerow([name, *("" if math.isnan(v) else f"{v:.4f}" for v in map(float, values))])
    return buf.getvalue()


def write_record(record: ResultRecord, out_dir: Path, *, overwrite: bool = False) -> Path:
    """Write ``out_dir/metrics.json`` and ``out_dir/per_class.csv`` atomically; return the JSON path.

    ``per_class.csv`` goes first and ``metrics.json`` last, so a crash in between leaves no complete record
    and the run is redone on resume.

    Raises:
        ResultExistsError: a complete record is already there and ``overwrite`` is False (whether or not its
            config hash matches: a result is never replaced silently).
        PermissionError: ``out_dir`` cannot be created or written.
    """
    out_dir = Path(out_dir)
    target = out_dir / METRICS_FILE
    _make_dir(out_dir)
    existing = _read_existing(target)
    if existing is not None and existing.complete and not overwrite:
        if existing.config_hash == record.config_hash:
            why = f"already holds a complete result with the same config hash {record.config_hash}"
        else:
            why = (
                f"holds a complete result of a different config (hash {existing.config_hash}, "
                f"new {record.config_hash})"
            )
        raise ResultExistsError(
            f"{target} {why}; pass overwrite=True (results.overwrite=true) to replace it, or choose "
            "another run name"
        )
    if existing is not None and existing.complete:
        logger.warning("replacing the complete result at %s (overwrite requested)", target)
    atomic_write_text(out_dir / PER_CLASS_FILE, per_class_csv(record))
    atomic_write_text(target, record.to_json())
    logger.info("wrote %s", target)
    return target


def _make_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise PermissionError(
            f"cannot create results directory {out_dir}: permission denied; choose a writable results "
            "directory (paths.results_dir=...)"
        ) from None
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(
            f"cannot create results directory {out_dir}: a file is in the way; remove it or choose another "
            "results directory"
        ) from None
    if not os.access(out_dir, os.W_OK):
        raise PermissionError(
            f"results directory {out_dir} is not writable; fix its permissions or choose another "
            "(paths.results_dir=...)"
        )


def _read_existing(path: Path) -> ResultRecord | None:
    """The record at ``path``, or None when there is none or it is unreadable (then it may be replaced)."""
    if not path.exists():
        return None
    try:
        return read_record(path)
    except (OSError, ValueError) as err:
        logger.warning("replacing unreadable result file: %s", err)
        return None


def _candidate_files(experiment_dir: Path) -> list[Path]:
    """``<run>/metrics.json`` and ``<sweep>/<run>/metrics.json`` (Hydra multirun nests jobs one deeper)."""
    root = Path(experiment_dir)
    return sorted({*root.glob(f"*/{METRICS_FILE}"), *root.glob(f"*/*/{METRICS_FILE}")})


def _iter_complete(experiment_dir: Path) -> Iterable[tuple[Path, ResultRecord]]:
    for path in _candidate_files(experiment_dir):
        try:
            record = read_record(path)
        except (OSError, ValueError) as err:
            logger.warning("ignoring unreadable result (it will be recomputed): %s", err)
            continue
        if record.complete:
            yield path, record


def find_complete(experiment_dir: Path, config_hash: str) -> ResultRecord | None:
    """A complete record in ``experiment_dir`` with ``config_hash``, or None: the sweep's resume check.

    Corrupt or partial files are skipped with a warning and never count as done; a missing directory
    simply has nothing done yet.
    """
    if not Path(experiment_dir).is_dir():
        return None
    for path, record in _iter_complete(experiment_dir):
        if record.config_hash == config_hash:
            logger.info("found a complete result for config %s at %s", config_hash, path)
            return record
    return None


def load_records(experiment_dir: Path) -> list[ResultRecord]:
    """Every complete record of an experiment, sorted by (run, row, column) for deterministic tables.

    Raises:
        FileNotFoundError: ``experiment_dir`` does not exist.
        NotADirectoryError: ``experiment_dir`` is a file.
    """
    root = Path(experiment_dir)
    if not root.exists():
        raise FileNotFoundError(
            f"results directory {root} does not exist; run `cliptrase-eval experiment=...` to create it"
        )
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory; give the results/<experiment> folder")
    records = [record for _, record in _iter_complete(root)]
    return sorted(records, key=lambda r: (r.run, r.row, r.column, str(r.provenance.get("date", ""))))
