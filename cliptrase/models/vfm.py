"""Vision foundation models (VFMs) for the methods that pair CLIP with one (ProxyCLIP): DINO ViTs built as
trained, their weights cached and fetched ahead of time like CLIP's.

The network is timm's ``VisionTransformer`` (the architecture behind timm's ``vit_*_patch*_224.dino``
models), never modified: :class:`DinoViT` runs its submodules (patch convolution, ``[CLS]``, the blocks'
norms, qkv / proj and MLP, final norm) over tokens it embeds itself, with DINO's order of operations, so that
its numbers are DINO's (bit-identical on CPU in fp32). Two places differ from timm's own forward: the
attention (:func:`dino_attention`: DINO scales ``q @ kᵀ``, timm scales q or fuses) and the positional
table. DINO (facebookresearch/dino@7c446df ``vision_transformer.py:174-194``, ``interpolate_pos_encoding``)
resizes the stored table with ``F.interpolate(scale_factor=((h // p + 0.1) / g0, (w // p + 0.1) / g0),
mode="bicubic")`` (no antialias); timm's ``dynamic_img_size`` path resizes to ``size=(h, w)`` with
antialias (``timm/layers/pos_embed.py:20-65``), which moves the table by up to ~0.4 and the ProxyCLIP labels
of 0.01-0.6 % of the pixels (docs/methods.md "ProxyCLIP"). :func:`dino_pos_embed` is DINO's rule
(:func:`cliptrase.models.dense.resample_pos_embed` with the ``+0.1`` offset, the same arithmetic).

Weights:

* a named model (``dino_vits16``, ``dino_vits8``, ``dino_vitb16``, ``dino_vitb8``: DINO's ``torch.hub``
  names, ``hubconf.py``) reads the checkpoint DINO publishes (the ``url`` of timm's pretrained config, the
  file ``torch.hub.load('facebookresearch/dino:main', 'dino_vitb8')`` loads) from the cache — torch.hub's
  checkpoint folder by default, so a machine that ran DINO's hub entry already has it — and downloads it
  only on a miss; offline a miss is one line naming ``cliptrase models fetch <name>``;
* ``weights=FILE`` is a local checkpoint in DINO's key format (``cls_token``, ``pos_embed``,
  ``patch_embed.proj.*``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``, ``norm.*``; a
  plain state dict as ``dino_vitbase8_pretrain.pth``), loaded ``strict`` into the architecture the config
  gives (patch size, width, depth, heads, qkv bias; the named model's where not given), so small test models
  work. Files are read without an unrestricted pickle (:func:`cliptrase.models.checkpoints.read_state_dict`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from cliptrase.errors import UnknownNameError, WeightsError
from cliptrase.models import hub
from cliptrase.models.checkpoints import CheckpointError, read_state_dict
from cliptrase.models.dense import resample_pos_embed
from cliptrase.models.hub import WeightsUnavailableError

logger = logging.getLogger(__name__)

DINO_POS_OFFSET = 0.1
"""DINO's ``w0, h0 = w0 + 0.1, h0 + 0.1`` (vision_transformer.py:184-186: "add a small number to avoid
floating point error in the interpolation")."""


@dataclass(frozen=True)
class VitArch:
    """A DINO ViT's architecture (DINO ``vision_transformer.py:243-254``: ``vit_small`` 384 / 12 / 6,
    ``vit_base`` 768 / 12 / 12, both ``qkv_bias=True``, ``mlp_ratio=4``, ``LayerNorm(eps=1e-6)``, trained at
    224).

    Attributes:
        patch_size: patch side.
        embed_dim: width.
        depth: number of blocks.
        num_heads: attention heads.
        qkv_bias: bias of the qkv projection.
        mlp_ratio: MLP hidden width / width.
        img_size: the training input side (the positional table holds ``(img_size / patch_size) ** 2`` rows).
        ln_eps: LayerNorm epsilon.
    """

    patch_size: int
    embed_dim: int
    depth: int = 12
    num_heads: int = 12
    qkv_bias: bool = True
    mlp_ratio: float = 4.0
    img_size: int = 224
    ln_eps: float = 1e-6


@dataclass(frozen=True)
class VfmSpec:
    """A named VFM: its architecture, the timm model that defines it and the published weights.

    Attributes:
        name: the name configs use (DINO's ``torch.hub`` entry name).
        timm_name: timm's model name with pretrained tag (its config gives the weights' url, mean and std).
        arch: the architecture.
    """

    name: str
    timm_name: str
    arch: VitArch


VFMS: dict[str, VfmSpec] = {
    spec.name: spec
    for spec in (
        VfmSpec("dino_vits16", "vit_small_patch16_224.dino", VitArch(16, 384, num_heads=6)),
        VfmSpec("dino_vits8", "vit_small_patch8_224.dino", VitArch(8, 384, num_heads=6)),
        VfmSpec("dino_vitb16", "vit_base_patch16_224.dino", VitArch(16, 768)),
        VfmSpec("dino_vitb8", "vit_base_patch8_224.dino", VitArch(8, 768)),
    )
}
"""The supported VFMs by name (DINO hubconf.py: ``dino_vits16``, ``dino_vits8``, ``dino_vitb16``,
``dino_vitb8``; ProxyCLIP's default is ``dino_vitb8``, ``proxyclip_segmentor.py:49-53``)."""


def vfm_spec(name: str) -> VfmSpec:
    """The :class:`VfmSpec` of ``name``; raises :class:`UnknownNameError` listing the valid names."""
    if name not in VFMS:
        raise UnknownNameError(f"unknown vision foundation model {name!r}; valid: {', '.join(VFMS)}")
    return VFMS[name]


def _pretrained_cfg(spec: VfmSpec) -> Any:  # timm.models.PretrainedCfg
    import timm

    cfg = timm.models.get_pretrained_cfg(spec.timm_name)
    if cfg is None:
        raise UnknownNameError(f"timm has no pretrained config {spec.timm_name!r} (timm {timm.__version__})")
    return cfg


def weights_url(name: str) -> str:
    """Where DINO publishes ``name``'s checkpoint (the ``url`` of timm's pretrained config, the same file
    DINO's ``hubconf.py`` loads)."""
    return str(_pretrained_cfg(vfm_spec(name)).url)


def default_cache_dir() -> Path:
    """torch.hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``), where DINO's hub entry caches it."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_file(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``name``'s checkpoint is (or would be) cached."""
    folder = Path(os.path.expanduser(str(cache_dir))) if cache_dir else default_cache_dir()
    return folder / os.path.basename(urlparse(weights_url(name)).path)


def fetch_command(name: str, cache_dir: str | os.PathLike[str] | None) -> str:
    """The command that downloads ``name``'s weights ahead of time."""
    cache = f" --cache-dir {cache_dir}" if cache_dir else ""
    return f"cliptrase models fetch {name}{cache}"


def fetch(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local checkpoint of ``name``: from the cache, or downloaded into it (torch.hub's downloader).

    Raises:
        WeightsUnavailableError: not cached and the host is unreachable (or ``HF_HUB_OFFLINE`` is set, the
            one offline switch of :mod:`cliptrase.models.hub`): one line naming the fetch command.
    """
    path = cached_file(name, cache_dir)
    if path.is_file():
        logger.info("weights of %s from the cache: %s", name, path)
        return path
    url = weights_url(name)
    host = urlparse(url).hostname or ""
    offline = hub.hub_offline()
    if offline or not hub.reachable(host, urlparse(url).port or 443):
        why = "HF_HUB_OFFLINE is set" if offline else f"{host} is unreachable"
        raise WeightsUnavailableError(
            f"weights of {name} are not in the cache ({path}) and cannot be downloaded ({why}); on a machine "
            f"with internet run `{fetch_command(name, cache_dir)}` (same cache), or set "
            "method.params.vfm_weights=FILE"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s from %s", name, url)
    torch.hub.download_url_to_file(url, str(path), progress=False)
    return path


def dino_pos_embed(pos: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """DINO's positional table for a patch grid (``interpolate_pos_encoding``, vision_transformer.py:174-194).

    The stored table is used as is when the grid is the stored square one; otherwise its patch rows, as a
    (1, D, g0, g0) image, are resized with ``F.interpolate(scale_factor=((h + 0.1) / g0, (w + 0.1) / g0),
    mode="bicubic")`` (align_corners False, no antialias) and the ``[CLS]`` row is kept.

    Args:
        pos: (1 + g0 * g0, D) stored table.
        grid_hw: (rows, cols) of the patch grid.
    """
    return resample_pos_embed(pos, grid_hw, offset=DINO_POS_OFFSET)


def dino_attention(attn: nn.Module, x: Tensor) -> Tensor:
    """DINO's ``Attention.forward`` (vision_transformer.py:68-92) over a timm ``Attention``'s weights.

    ``softmax((q @ kᵀ) · d^-0.5) @ v``, heads concatenated, ``proj``: DINO's order of operations. timm's own
    forward scales q before the product or calls the fused kernel, which moves the features by ~3e-6 and,
    through the proxy attention's ``S < 0`` mask, the affinity by up to ~3e-3 (this one is bit-identical to
    DINO's on CPU).
    """
    b, n, c = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    weights = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
    return attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


def dino_block(block: nn.Module, x: Tensor) -> Tensor:
    """DINO's ``Block.forward`` (vision_transformer.py:104-113) over a timm ``Block``'s weights:
    ``x + attn(norm1(x))``, ``x + mlp(norm2(x))`` (timm's LayerScale and drop-path, identities for DINO's
    architecture, are applied as timm defines them)."""
    x = x + block.drop_path1(block.ls1(dino_attention(block.attn, block.norm1(x))))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def build_timm_vit(arch: VitArch) -> nn.Module:
    """timm's ``VisionTransformer`` with DINO's architecture (no classifier head), eval mode, frozen."""
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        img_size=arch.img_size,
        patch_size=arch.patch_size,
        embed_dim=arch.embed_dim,
        depth=arch.depth,
        num_heads=arch.num_heads,
        mlp_ratio=arch.mlp_ratio,
        qkv_bias=arch.qkv_bias,
        norm_layer=partial(nn.LayerNorm, eps=arch.ln_eps),
        num_classes=0,
    )
    return model.eval().requires_grad_(False)


class DinoViT(nn.Module):
    """A DINO ViT as ProxyCLIP reads it: ``get_intermediate_layers(x)[0]`` — the last block's output after
    the final norm — patch tokens only, as a (B, D, h, w) map (DINO vision_transformer.py:196-233;
    ``proxyclip_segmentor.py:132, 154``).

    Args:
        vit: timm ``VisionTransformer`` with DINO's architecture and weights (read, never modified).
        name: model name, for provenance.
        mean: the RGB mean its inputs are normalised with (0..1 scale).
        std: the RGB std.
    """

    def __init__(self, vit: nn.Module, *, name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.vit = vit
        self.name = name
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        ps = vit.patch_embed.proj.kernel_size
        self.patch_size: tuple[int, int] = (int(ps[0]), int(ps[1]))
        self.embed_dim = int(vit.embed_dim)

    def embed(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """DINO's ``prepare_tokens``: patch convolution, ``[CLS]`` first, DINO's positional table."""
        x = self.vit.patch_embed.proj(images)
        grid_hw = (int(x.shape[-2]), int(x.shape[-1]))
        x = self.vit.patch_embed.norm(x.flatten(2).transpose(1, 2))
        cls = self.vit.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        return x + dino_pos_embed(self.vit.pos_embed[0], grid_hw).to(x.dtype), grid_hw

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) images normalised with :attr:`mean` / :attr:`std` -> (B, D, H // p, W // p)."""
        x, (h, w) = self.embed(images)
        x = self.vit.norm_pre(x)
        for block in self.vit.blocks:
            x = dino_block(block, x)
        x = self.vit.norm(x)
        return x[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, h, w)

    def describe(self) -> dict[str, object]:
        """What the network is, for provenance."""
        return {"vfm": self.name, "vfm_patch": self.patch_size[0], "vfm_width": self.embed_dim}


def load_dino_state(path: str | Path) -> dict[str, Tensor]:
    """A DINO-format state dict from ``path``, without an unrestricted pickle (plain state dicts, as DINO
    publishes them; a ``module.`` / ``backbone.`` prefix is removed as DINO's
    ``utils.load_pretrained_weights`` does, utils.py:98-99)."""
    state = read_state_dict(path)
    for prefix in ("module.", "backbone."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def build_dino(
    name: str = "dino_vitb8",
    *,
    weights: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    **arch: object,
) -> DinoViT:
    """A DINO ViT with its weights, in eval mode (see the module docstring).

    Args:
        name: a :data:`VFMS` name; its architecture and mean/std are the defaults.
        weights: a local DINO-format checkpoint instead of the published one.
        cache_dir: where published checkpoints are cached (default: torch.hub's checkpoint folder).
        **arch: :class:`VitArch` fields overriding the named architecture (non-None values only).

    Raises:
        WeightsError: a checkpoint that does not fit the architecture (names the keys / shapes and the
            config keys to set).
    """
    spec = vfm_spec(name)
    overrides = {k: v for k, v in arch.items() if v is not None}
    unknown = sorted(set(overrides) - set(VitArch.__dataclass_fields__))
    if unknown:
        raise UnknownNameError(f"unknown VFM architecture field {unknown[0]!r}")
    vit_arch = replace(spec.arch, **overrides)
    path = Path(weights).expanduser() if weights else fetch(name, cache_dir)
    state = load_dino_state(path)
    if "pos_embed" in state:  # the training side follows from the table (a file trained at another size)
        rows = state["pos_embed"].shape[1] - 1
        side = round(rows**0.5)
        if side * side == rows:
            vit_arch = replace(vit_arch, img_size=side * vit_arch.patch_size)
    model = build_timm_vit(vit_arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"weights file {path} does not fit the DINO architecture {vit_arch} "
            f"({' '.join(first[:3])[:400]}); set method.params.vfm_patch_size / vfm_embed_dim / vfm_depth / "
            "vfm_num_heads / vfm_qkv_bias to the checkpoint's"
        ) from None
    cfg = _pretrained_cfg(spec)
    logger.info("VFM %s (%s) from %s", name, vit_arch, path)
    return DinoViT(model, name=name, mean=tuple(cfg.mean), std=tuple(cfg.std)).eval()


__all__ = [
    "DINO_POS_OFFSET",
    "VFMS",
    "DinoViT",
    "VfmSpec",
    "VitArch",
    "WeightsError",
    "build_dino",
    "dino_pos_embed",
    "fetch",
    "vfm_spec",
]
