"""``cliptrase models``: the shipped model configs, what they build, and fetching their weights ahead of time.

    cliptrase models list [--cache-dir DIR]
    cliptrase models fetch NAME... | --all [--cache-dir DIR]

``NAME`` is a model config (``vit_b16_openai``, a file of ``configs/model/``), an open_clip
``ARCH:TAG`` pair (``ViT-B-16:openai``) or a vision foundation model of ``method=proxyclip`` (``dino_vitb8``,
``dino_vitb16``, ``dino_vits8``, ``dino_vits16``: DINO's published checkpoint, cached in torch.hub's
checkpoint folder unless ``--cache-dir`` is given, :mod:`cliptrase.models.vfm`). ``fetch`` runs on a machine
with internet and fills the same cache
(``model.cache_dir`` of the eval config, default open_clip's) that compute nodes without internet read.
"""

from __future__ import annotations

import argparse
import logging

from cliptrase.models.shipped import ModelSpec, resolve_specs, shipped_model_specs

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
    _list_vfms(args.cache_dir)
    return 0


def _list_vfms(cache_dir: str | None) -> None:
    from cliptrase.models import vfm

    for name, spec in vfm.VFMS.items():
        path = vfm.cached_file(name, cache_dir)
        a = spec.arch
        logger.info(
            "%-20s %-28s ViT/%d width %d, %d blocks, %d heads  %s",
            name, spec.timm_name, a.patch_size, a.embed_dim, a.depth, a.num_heads,
            f"cached: {path}" if path.is_file() else "not cached",
        )  # fmt: skip


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ",".join(f"{v:.4g}" for v in values) + ")"


def _fetch(args: argparse.Namespace) -> int:
    from cliptrase.models import hub, vfm

    vfms = [n for n in args.names if n in vfm.VFMS]
    specs: list[ModelSpec] = (
        resolve_specs([n for n in args.names if n not in vfm.VFMS], all_shipped=args.all)
        if args.all or len(vfms) < len(args.names)
        else []
    )
    for name in vfms:
        logger.info("%s (vision foundation model): %s", name, vfm.fetch(name, args.cache_dir))
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
    fetch.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="model config (vit_b16_openai), ARCH:TAG or a VFM (dino_vitb8)",
    )
    fetch.add_argument("--all", action="store_true", help="every shipped model config with a tag")
    fetch.add_argument("--cache-dir", default=None, help="open_clip cache (default: open_clip's own)")
    fetch.set_defaults(func=_fetch)
