"""``cliptrase reproduce paper|standard``: from an empty data root to measured beside published numbers.

    cliptrase reproduce paper [--datasets voc20 context59 ...] [--root DIR] [--results DIR]
                              [--model SLUG | --weights FILE] [--methods cliptrase ...] [--max-images N]
                              [--device cuda] [--mirror KEY=URL] [--delete-archives] [--subset]

Parses the options and runs :func:`cliptrase.reproduce.reproduce` (download -> prepare -> check -> evaluate
-> table per dataset, every finished step skipped). Exit status (:class:`cliptrase.errors.ExitCode`): 0 when
every dataset was evaluated, 1 when some wait for a manual download or failed, 2 on bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cliptrase.cli.data import parse_mirrors
from cliptrase.paths import default_data_root
from cliptrase.reproduce import TABLES, Options, reproduce


def options_from_args(args: argparse.Namespace) -> Options:
    """The run's :class:`~cliptrase.reproduce.Options` from the parsed command line."""
    spec = TABLES[args.table]
    return Options(
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


def _run(args: argparse.Namespace) -> int:
    return reproduce(options_from_args(args))


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
    parser.set_defaults(func=_run, error_prefix=lambda args: f"reproduce {args.table}")
