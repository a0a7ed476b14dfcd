"""What identifies a job: its config hash (resume key), run folder name and table row label."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cliptrase.records.results import config_hash

HASH_EXCLUDE = (
    "paths",
    "hydra",
    "results",
    "save_predictions",
    "num_workers",
    "device",
    "experiment_name",
    "window_batch",
    "batch_size",
    "threads",
    "allow_invalid_labels",  # a count in the record, not a change of the numbers
)
"""Keys that do not change the numbers and therefore not the config hash."""


def config_hash_of(cfg: DictConfig) -> str:
    """Hash of everything that changes the numbers (not the data root or weights cache: the files move)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container["dataset"].pop("data_root", None)
    container["model"].pop("cache_dir", None)  # where weights are cached is not what they are
    if container["model"].get("quick_gelu") is None:  # the default (as trained): hashes as before the key
        container["model"].pop("quick_gelu", None)
    for key in ("pixel_mean", "pixel_std"):  # null (the default): hashes as before the keys
        if container["protocol"].get(key) is None:
            container["protocol"].pop(key, None)
    container["method"].get("params", {}).pop("vfm_cache_dir", None)  # where VFM weights are cached
    container["protocol"].pop("published_precision", None)  # a preset's fact; the resolved precision counts
    return config_hash(container, exclude=HASH_EXCLUDE)


LABEL_GROUPS = ("dataset", "model", "protocol", "method")
"""Config groups compared with their option file to find what a job changed."""
_NOT_NUMBERS = {"dataset": ("data_root", "name"), "model": ("slug", "cache_dir"), "protocol": ("name",)}
"""Group fields that never change the numbers (or are the label's own fields)."""
_DIGEST_CHUNK = 1 << 20


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def _option_defaults(group: str, option: str) -> dict[str, Any] | None:
    """Flat values of ``configs/<group>/<option>.yaml`` over its schema's defaults (as Hydra composes the
    option: every group file is ``defaults: [base_<group>, _self_]``); None when there is no such file."""
    from cliptrase.config import DatasetConfig, MethodConfig, ModelConfig, ProtocolConfig
    from cliptrase.paths import config_dir

    schemas = {"dataset": DatasetConfig, "model": ModelConfig, "protocol": ProtocolConfig}
    schemas["method"] = MethodConfig

    path = config_dir() / group / f"{option}.yaml"
    if not path.is_file():
        return None
    node = OmegaConf.load(path)
    own = {k: v for k, v in OmegaConf.to_container(node, resolve=False).items() if k != "defaults"}
    merged = OmegaConf.merge(OmegaConf.structured(schemas[group]), own)
    return _flatten(OmegaConf.to_container(merged, resolve=False))


def _top_level_defaults() -> dict[str, Any]:
    from cliptrase.paths import config_dir

    node = OmegaConf.to_container(OmegaConf.load(config_dir() / "eval.yaml"), resolve=False)
    return {k: v for k, v in node.items() if not isinstance(v, (dict, list))}


_UNMARKED_PRECISIONS = (None, "fp32")
"""``precision`` values a row label leaves out: fp32, and null (not yet resolved: fp32 on CPU)."""


def _format(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else str(value)


def changed_settings(cfg: DictConfig) -> dict[str, list[str]]:
    """``key=value`` of every setting that changes the numbers and differs from the job's group options
    and ``configs/eval.yaml``, per group (``"top"`` for top-level keys), sorted.

    Overrides given on the command line, set by an experiment file or composed by ``cliptrase reproduce``
    all count alike: the comparison is with the option files, not with the command line.
    """
    container = OmegaConf.to_container(cfg, resolve=False)
    options = {"dataset": cfg.dataset.name, "model": cfg.model.slug, "protocol": cfg.protocol.name}
    options["method"] = cfg.method.name
    changed: dict[str, list[str]] = {}
    for group in LABEL_GROUPS:
        reference = _option_defaults(group, str(options[group])) or {}
        values = _flatten(container[group])
        skip = _NOT_NUMBERS.get(group, ())
        changed[group] = sorted(
            f"{key}={_format(value)}"
            for key, value in values.items()
            if key.split(".")[0] not in skip and (key not in reference or reference[key] != value)
        )
    defaults = _top_level_defaults()
    changed["top"] = sorted(
        f"{key}={_format(container[key])}"
        for key, value in defaults.items()
        if key in container
        and key not in HASH_EXCLUDE
        and container[key] != value
        and not (key == "precision" and container[key] in _UNMARKED_PRECISIONS)
    )
    return changed


def weights_digest(path: str | Path) -> str:
    """First 8 hex digits of the sha256 of a weights file (its stem when the file cannot be read)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_DIGEST_CHUNK):
                digest.update(chunk)
    except OSError:
        return Path(path).stem
    return digest.hexdigest()[:8]


def model_label(cfg: DictConfig, changed_model: list[str]) -> str:
    """The model part of a row: the config slug while the job uses that config as shipped, else
    ``<name>/<tag>``; a weights file adds its digest (``weights_file:1a2b3c4d``)."""
    model = cfg.model
    if model.weights:
        return f"{model.slug}:{weights_digest(model.weights)}"
    if not changed_model:
        return str(model.slug)
    return f"{model.name}/{model.pretrained}"


def run_name_of(cfg: DictConfig, digest: str) -> str:
    """Run folder name: ``<dataset>__<model>__<method>__<protocol>__<hash[:8]>`` (model as in the row)."""
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", model_label(cfg, changed_settings(cfg)["model"]))
    parts = (cfg.dataset.name, model, cfg.method.name, cfg.protocol.name, digest[:8])
    return "__".join(str(p) for p in parts)


def row_label(cfg: DictConfig) -> str:
    """Table row: ``method | model | protocol``, then every other setting that changes the numbers.

    The settings are those differing from the job's option files and ``configs/eval.yaml``: method fields
    as ``eps=0.5`` (ablations), the rest with their group (``protocol.short_side=448``,
    ``precision=bf16``, ``model.quick_gelu=True``). Two jobs with different configs therefore never share a
    row, and the jobs of a shipped option keep the plain ``method | model | protocol`` label (which the
    published rows use).
    """
    changed = changed_settings(cfg)
    model = model_label(cfg, changed["model"])
    extras = [*changed["method"], *(f"protocol.{c}" for c in changed["protocol"])]
    extras += [f"dataset.{c}" for c in changed["dataset"]]
    shown = {"weights"} | (
        {"name", "pretrained"} if model == f"{cfg.model.name}/{cfg.model.pretrained}" else set()
    )
    extras += [f"model.{c}" for c in changed["model"] if c.split("=")[0] not in shown]
    extras += changed["top"]
    label = f"{cfg.method.name} | {model} | {cfg.protocol.name}"
    return label + (" | " + ",".join(extras) if extras else "")


def experiment_dir_of(cfg: DictConfig) -> Path:
    """``<paths.results_dir>/<experiment_name>``: where a job's run folder and the tables go."""
    return Path(cfg.paths.results_dir) / cfg.experiment_name


@dataclass(frozen=True)
class JobIdentity:
    """Who a job is, resolved once from its config and passed down (never recomputed on the way).

    Attributes:
        experiment_dir: ``<results_dir>/<experiment>``.
        config_hash: the resume key (:func:`config_hash_of`).
        run_name: the run folder name (:func:`run_name_of`).
        row: the table row label (:func:`row_label`).
    """

    experiment_dir: Path
    config_hash: str
    run_name: str
    row: str

    @property
    def run_dir(self) -> Path:
        """The job's run folder, ``<experiment_dir>/<run_name>``."""
        return self.experiment_dir / self.run_name


def job_identity(cfg: DictConfig, *, run_name: str | None = None) -> JobIdentity:
    """The :class:`JobIdentity` of ``cfg``; ``run_name`` replaces the derived folder name (scripts, tests)."""
    digest = config_hash_of(cfg)
    return JobIdentity(experiment_dir_of(cfg), digest, run_name or run_name_of(cfg, digest), row_label(cfg))
