"""``cliptrase-eval``'s command line checked before Hydra runs it: what Hydra would fail on while it sets the
run up becomes one user-error line (exit 2), like every other bad input.

Hydra composes the config, creates the output folder and picks the launcher inside ``hydra.main``, before
the task function and its error boundary run, and reports a failure there its own way: a config it cannot
find (``hydra/launcher=nosuch``, ``dataset=nosuch``) or an override it cannot apply as several lines and
exit 1, an output folder below a file or in a read-only place as a traceback. :func:`check_command_line`
composes the command line first, exactly as Hydra will (the public compose API, every value of a sweep
once), and probes the folder Hydra is about to create, raising a :class:`~cliptrase.errors.UserError`
naming the override or folder and the fix. Hydra itself is not changed.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cliptrase.errors import ConfigError, OutputError, UnknownNameError
from cliptrase.utils.fs import ensure_writable

logger = logging.getLogger(__name__)

OUTPUT_FIX = "set paths.results_dir=<a writable folder> (or hydra.run.dir / hydra.sweep.dir)"
LAUNCHER_GROUP = "hydra/launcher"


def hydra_arguments(argv: Sequence[str]) -> argparse.Namespace | None:
    """``argv`` parsed by Hydra's own command-line parser (the one adapter to that private helper), or
    None when Hydra would refuse it (Hydra then says why)."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.exit_on_error = False  # this parser instance only: Hydra prints its own usage error
    try:
        args, unknown = parser.parse_known_args(list(argv))
    except (argparse.ArgumentError, SystemExit):
        return None
    return None if unknown else args


def check_command_line(argv: Sequence[str], *, config_dir: Path, config_name: str) -> None:
    """Compose ``argv``'s overrides as Hydra will, and probe the output folder Hydra will create.

    Only a command that runs jobs (no ``--cfg``, ``--info``, ``--help``) with the packaged primary config
    is checked; ``--config-path/--config-name/--config-dir`` leave it to Hydra.

    Raises:
        UnknownNameError: a config group option that does not exist (the valid ones named).
        ConfigError: an override Hydra cannot apply.
        OutputError: the output folder cannot be created or written.
    """
    args = hydra_arguments(argv)
    if args is None or not _runs_jobs(args):
        return
    overrides = list(args.overrides)
    if args.multirun:
        variants = _variants(overrides)
        if variants is None:
            return
        for variant in variants:
            _compose(variant, config_dir, config_name)
        cfg = _compose(_without_sweeps(overrides), config_dir, config_name)
    else:
        cfg = _compose(overrides, config_dir, config_name)
    multirun = args.multirun or str(OmegaConf.select(cfg, "hydra.mode", default="")) == "MULTIRUN"
    check_output_folder(cfg, multirun=multirun)


def _runs_jobs(args: argparse.Namespace) -> bool:
    other = args.help or args.hydra_help or args.cfg or args.info or args.shell_completion
    own = args.config_path or args.config_name or args.config_dir or args.experimental_rerun
    return not other and not own


def _parsed(overrides: Sequence[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def _variants(overrides: Sequence[str]) -> list[list[str]] | None:
    """One override list per value of every sweep (the other sweeps at their first value), so every
    config group option a sweep names is composed once; None when a sweep cannot be listed here."""
    try:
        parsed = _parsed(overrides)
        values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else None for o in parsed]
    except (HydraException, OmegaConfBaseException, ValueError):
        return None  # Hydra reports an override it cannot parse itself
    base = [o.input_line if v is None else f"{o.get_key_element()}={v[0]}" for o, v in zip(parsed, values)]
    out = [base]
    for i, (o, vals) in enumerate(zip(parsed, values)):
        for value in (vals or [])[1:]:
            out.append([*base[:i], f"{o.get_key_element()}={value}", *base[i + 1 :]])
    return out


def _without_sweeps(overrides: Sequence[str]) -> list[str]:
    """The overrides Hydra applies to the primary config of a multirun (sweeps apply per job)."""
    try:
        return [o.input_line for o in _parsed(overrides) if not o.is_sweep_override()]
    except (HydraException, OmegaConfBaseException, ValueError):
        return list(overrides)


def _compose(overrides: Sequence[str], config_dir: Path, config_name: str) -> DictConfig:
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name, overrides=list(overrides), return_hydra_config=True)
    except MissingConfigException as err:
        raise _missing_config(err) from None
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_one_line(err)) from None


def _missing_config(err: MissingConfigException) -> ConfigError:
    first = str(err).strip().splitlines()[0]
    if not err.options or not err.missing_cfg_file:
        return ConfigError(first)
    group = err.missing_cfg_file.rpartition("/")[0]
    hint = (
        " (a launcher plugin adds its options when installed, e.g. pip install hydra-submitit-launcher)"
        if group == LAUNCHER_GROUP
        else ""
    )
    return UnknownNameError(f"{first}; valid {group} options: {', '.join(err.options)}{hint}")


def _one_line(err: BaseException) -> str:
    """Hydra's message, then its cause's first line (OmegaConf's reason), on one line."""
    text = " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
    cause = err.__cause__
    if cause is not None and str(cause).strip():
        text += f" ({str(cause).strip().splitlines()[0]})"
    return text


def _output_dirs(cfg: DictConfig, *, multirun: bool) -> Iterator[tuple[str, Path]]:
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        value = OmegaConf.select(cfg, key)
    except OmegaConfBaseException as err:  # e.g. an interpolation only Hydra's runtime can resolve
        logger.debug("%s not checked before Hydra: %s", key, err)
        return
    if value:
        yield key, Path(str(value))


def check_output_folder(cfg: DictConfig, *, multirun: bool) -> None:
    """The folder Hydra creates its output folder in (the parent of ``hydra.run.dir``, or of a multirun's
    ``hydra.sweep.dir``) can be created and written; the timestamped folder itself is left to Hydra (it
    resolves the time again).

    Raises:
        OutputError: one line naming the folder, the reason (a file on the way, permissions) and the fix.
    """
    for key, folder in _output_dirs(cfg, multirun=multirun):
        target = folder.parent
        blocker = next((p for p in (target, *target.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise OutputError(
                f"{key}: cannot create {target}: {blocker} is a file, not a folder; {OUTPUT_FIX}"
            )
        ensure_writable(target, f"folder of {key}", OUTPUT_FIX)
