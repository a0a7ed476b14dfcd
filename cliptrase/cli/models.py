"""``cliptrase models``: the shipped model configs, what they build, and fetching their weights ahead of time.

    cliptrase models list [--cache-dir DIR]
    cliptrase models fetch NAME... | --all [--cache-dir DIR]

``NAME`` is a model config (``vit_b16_openai``, a file of ``configs/model/``) or an open_clip
``ARCH:TAG`` pair (``ViT-B-16:openai``). ``fetch`` runs on a machine with internet and fills the same cache
(``model.cache_dir`` of the eval config, default open_clip's) that compute nodes without internet read.
"""

from __future__ import annotations

import argparse
import logging

from cliptrase.models.catalogue import ModelSpec, resolve_specs, shipped_model_specs

logger = logging.getLogger(__name__)


def _list(args: argparse.Namespace) -> int:
    from cliptrase.models import hub

    for spec in shipped_model_specs():
        if spec.tag is None:
            logger.info("%-20s %s", spec.slug, spec.note)
            continue
        hit = hub.cached_weights(hub.tag_source(spec.name, spec.tag), args.cache_dir)
        logger.info(
            "%-20s %-20s %-18s %-9s %dpx mean=%s std=%s  %s",
            spec.slug,
            spec.name,
            spec.tag,
            spec.activation,
            spec.image_size,
            _fmt(spec.mean),
            _fmt(spec.std),
            f"cached: {hit}" if hit else "not cached",
        )
    return 0


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ",".join(f"{v:.4g}" for v in values) + ")"


def _fetch(args: argparse.Namespace) -> int:
    from cliptrase.models import hub

    specs: list[ModelSpec] = resolve_specs(args.names, all_shipped=args.all)
    for spec in specs:
        path = hub.fetch(spec.name, spec.tag, args.cache_dir)
        logger.info("%s (%s:%s): %s", spec.slug, spec.name, spec.tag, path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``models list`` and ``models fetch`` to the ``cliptrase`` parser."""
    parser = sub.add_parser("models", help="list shipped model configs, fetch their weights ahead of time")
    inner = parser.add_subparsers(dest="models_command", required=True)
    lst = inner.add_parser("list", help="shipped model configs: architecture, activation, mean/std, cached?")
    lst.add_argument("--cache-dir", default=None, help="open_clip cache (default: open_clip's own)")
    lst.set_defaults(func=_list)
    fetch = inner.add_parser("fetch", help="download weights into the cache (for nodes without internet)")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="model config (vit_b16_openai) or ARCH:TAG")
    fetch.add_argument("--all", action="store_true", help="every shipped model config with a tag")
    fetch.add_argument("--cache-dir", default=None, help="open_clip cache (default: open_clip's own)")
    fetch.set_defaults(func=_fetch)
