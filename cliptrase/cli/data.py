"""``cliptrase data``: list, download, prepare and check the benchmarks.

    cliptrase data list
    cliptrase data download NAME...|--all [--root DIR] [--mirror KEY=URL] [--delete-archives]
    cliptrase data prepare NAME --raw DIR --out DIR [--workers N] [--id-map FILE]
    cliptrase data check NAME|--all [--root DIR] [--expected N] [--workers N]

Each sub-command returns an exit code (:class:`cliptrase.errors.ExitCode`): 0 on success, 1 when ``check``
found problems or ``download`` waits for archives that need a sign-in, 2 on bad input (an unknown name, a
missing directory, an unwritable root, no space left) or a failed download, reported as one log line rather
than a traceback. Output goes through logging; the ``cliptrase`` entry point configures the handler.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cliptrase.datasets import DATASET_CLASSES, default_data_root
from cliptrase.datasets.config_files import list_dataset_configs, load_dataset_config
from cliptrase.errors import ConfigError, ExitCode

logger = logging.getLogger(__name__)

EXIT_OK = ExitCode.OK
EXIT_PROBLEMS = ExitCode.INCOMPLETE
EXIT_BAD_INPUT = ExitCode.USER_ERROR


def _list(args: argparse.Namespace) -> int:
    """Log every dataset config with its root and whether that root exists."""
    for name in list_dataset_configs():
        cfg = load_dataset_config(name, args.root)
        root = cfg.data_root or "(generated on first use)"
        found = "found" if cfg.data_root is None or Path(cfg.data_root).is_dir() else "missing"
        logger.info("%-14s %-20s %5d classes  %s [%s]", name, cfg.type, cfg.num_classes, root, found)
    return EXIT_OK


def _prepare(args: argparse.Namespace) -> int:
    from cliptrase.datasets.prepare import prepare_dataset

    prepare_dataset(args.name, args.raw, args.out, workers=args.workers, id_map=args.id_map)
    return EXIT_OK


def parse_mirrors(items: list[str] | None) -> dict[str, str]:
    """``KEY=URL`` pairs (KEY: a source key or an archive file name) -> mapping.

    Raises:
        ConfigError: An item without ``=``.
    """
    mirrors = {}
    for item in items or []:
        key, sep, url = item.partition("=")
        if not sep or not key or not url:
            raise ConfigError(f"--mirror {item!r}: expected KEY=URL, e.g. voc2012=https://mirror.example/voc")
        mirrors[key] = url
    return mirrors


def _download(args: argparse.Namespace) -> int:
    from cliptrase.datasets.download import download_datasets, downloadable_datasets, human_bytes, raw_dir

    if args.all == bool(args.names):
        raise ConfigError("give dataset NAMEs or --all, not both or neither")
    names = downloadable_datasets() if args.all else args.names
    done, manual = download_datasets(
        names, args.root, mirrors=parse_mirrors(args.mirror), keep_archives=not args.delete_archives
    )
    for outcome in done:
        actions = ", ".join(f"{a.filename} {a.action}" for a in outcome.archives)
        logger.info("%s: ready (%s; %s fetched)", outcome.key, actions, human_bytes(outcome.fetched_bytes))
    for waiting in manual:
        for line in waiting.instructions:
            logger.warning("%s", line)
    if manual:
        return EXIT_PROBLEMS
    root = args.root or default_data_root()
    for name in names:
        logger.info("next: cliptrase data prepare %s --raw %s --out %s", name, raw_dir(name, root), root)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from cliptrase.datasets.prepare.check import check_dataset

    if args.all == (args.name is not None):
        raise ConfigError("give a dataset NAME or --all, not both or neither")
    names = list_dataset_configs() if args.all else [args.name]
    status = EXIT_OK
    for name in names:
        expected = 0 if args.subset else args.expected
        report = check_dataset(name, args.root, expected=expected, workers=args.workers)
        for note in report.notes:
            logger.warning("%s: %s", name, note)
        if report.ok:
            logger.info("%s: OK, %d images at %s", name, report.num_images, report.root)
            continue
        status = EXIT_PROBLEMS
        logger.error("%s: %d problem(s) at %s", name, len(report.problems), report.root)
        for problem in report.problems:
            logger.error("%s: %s", name, problem)
    return status


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its ``list``/``download``/``prepare``/``check`` sub-commands."""
    names = sorted(DATASET_CLASSES)
    data = subparsers.add_parser("data", help="list, download, prepare and check benchmark datasets")
    commands = data.add_subparsers(
        dest="data_command", required=True, metavar="{list,download,prepare,check}"
    )

    listing = commands.add_parser("list", help="list the dataset configs and whether their roots exist")
    listing.add_argument(
        "--root", type=Path, default=None, help="data root (default: $CLIPTRASE_DATA or ./data)"
    )
    listing.set_defaults(func=_list)

    download = commands.add_parser(
        "download", help="fetch, verify and extract the official archives (resumable, idempotent)"
    )
    download.add_argument(
        "names", nargs="*", metavar="NAME", help="datasets to fetch (e.g. voc20 context59); or --all"
    )
    download.add_argument(
        "--all", action="store_true", help="every benchmark (login-only ones: instructions)"
    )
    download.add_argument(
        "--root", type=Path, default=None, help="data root (default: $CLIPTRASE_DATA or ./data)"
    )
    download.add_argument(
        "--mirror",
        action="append",
        metavar="KEY=URL",
        help="fetch a source (e.g. voc2012) or a file from URL/<file>; $CLIPTRASE_DOWNLOAD_BASE: all",
    )
    download.add_argument(
        "--delete-archives", action="store_true", help="delete each archive once extracted (saves disk)"
    )
    download.set_defaults(func=_download, error_prefix="data download")

    prepare = commands.add_parser("prepare", help="convert an official download into the data root")
    prepare.add_argument("name", choices=names, metavar="NAME", help=f"one of: {', '.join(names)}")
    prepare.add_argument(
        "--raw", type=Path, default=None, help="directory where the official archives were extracted"
    )
    prepare.add_argument(
        "--out", type=Path, default=None, help="data root to write into (e.g. $CLIPTRASE_DATA)"
    )
    prepare.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: cores, at most 8)"
    )
    prepare.add_argument(
        "--id-map", type=Path, default=None, help="ade847 only: MaskFormer's id/trainId table (JSON)"
    )
    prepare.set_defaults(func=_prepare, error_prefix="data prepare")

    check = commands.add_parser("check", help="check a prepared dataset; exit 1 if any problem is found")
    check.add_argument("name", nargs="?", default=None, metavar="NAME", help=f"one of: {', '.join(names)}")
    check.add_argument("--all", action="store_true", help="check every dataset config")
    check.add_argument(
        "--root", type=Path, default=None, help="data root (default: $CLIPTRASE_DATA or ./data)"
    )
    check.add_argument(
        "--expected", type=int, default=None, help="expected image count, for a deliberate subset"
    )
    check.add_argument(
        "--subset",
        action="store_true",
        help="the copy is a deliberate subset: any image count passes (noted), as in `cliptrase reproduce`",
    )
    check.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: cores, at most 8)"
    )
    check.set_defaults(func=_check, error_prefix="data check")
