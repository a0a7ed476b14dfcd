"""ProxyCLIP (Lan et al., ECCV 2024): CLIP's last attention replaced by a proxy attention built from a vision
foundation model's features of the same window (docs/methods.md "ProxyCLIP").

Exactly as the released code computes it (mc-lan/ProxyCLIP@e7b767f; ``PX`` = ``proxyclip_segmentor.py``,
``OC`` = its vendored ``open_clip/transformer.py``):

1. VFM input (PX:113-116): the CLIP-normalised window un-normalised per channel, ``x * std_clip + mean_clip``
   (``myutils.UnNormalize``), then normalised with the VFM's mean / std (torchvision ``Normalize``: ImageNet's
   for DINO); the same h x w window, not resized.
2. VFM features (PX:132, 154): DINO's last block output after the final norm, patch tokens, (B, C, h/p, w/p)
   (:class:`cliptrase.models.vfm.DinoViT`).
3. Proxy attention (OC:560-587), on CLIP's last block: ``ln_1``, CLIP's own v (input projection with bias) of
   the patch tokens, bilinearly resized from the CLIP grid to the VFM grid; the affinity ``S`` = cosine of the
   L2-normalised VFM features, ``S = (S - beta · mean(S)) · gamma`` with ONE mean over the window's whole
   matrix (diagonal included), ``S < 0 -> -inf``, softmax over keys (no 1/sqrt(d)), the same for every head;
   ``out_proj``. No residual, no ``ln_2`` / MLP (OC:526-531).
4. ``ln_post``, ``@ proj`` on the VFM grid's tokens (OC:533-536), L2-normalised: the output grid is the VFM's.

The released code runs one window at a time (batch 1); here windows are batched and every quantity is per
window (the mean of ``S`` included), so a batch equals its windows run one by one. The released code takes
both grid sides from the window height (PX:148-149, OC:521: square windows only); here rows and columns are
each the window's, which is the same on the square windows of every shipped config.

ProxyCLIP outputs no [CLS] token (OC:531 keeps the patches only); the [CLS] slot of the features holds vanilla
CLIP's (the unmodified last block), so that ``cls_product`` stays defined. The labels never read it
(``protocol=proxyclip`` has no [CLS] rule).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cliptrase.method.interface import METHODS, DenseMethod, MethodContext, method_options
from cliptrase.models.dense import DenseEncoder, DenseFeatures, LastBlockSpec, TowerState, project_qkv
from cliptrase.models.vfm import build_dino, vfm_spec

logger = logging.getLogger(__name__)

BETA = 1.2
"""Shift of the proxy attention, ``beta`` (PX:31; OC:573)."""
GAMMA = 3.0
"""Scale (inverse temperature) of the proxy attention, ``gamma`` (PX:31; OC:573)."""


@dataclass(frozen=True)
class ProxyCLIPOptions:
    """ProxyCLIP's knobs (``method.params``).

    Attributes:
        vfm: the vision foundation model (:data:`cliptrase.models.vfm.VFMS`; ProxyCLIP's default
            ``dino_vitb8``, configs/base_config.py:6 + PX:49-53).
        vfm_weights: a local checkpoint in DINO's key format instead of the published weights.
        vfm_cache_dir: where published VFM weights are cached (default: torch.hub's checkpoint folder).
        vfm_patch_size / vfm_embed_dim / vfm_depth / vfm_num_heads / vfm_qkv_bias: the architecture, where
            it differs from the named model's (a local checkpoint of another size).
        beta: shift factor of the normalised affinity.
        gamma: scale factor.
    """

    vfm: str = "dino_vitb8"
    vfm_weights: str | None = None
    vfm_cache_dir: str | None = None
    vfm_patch_size: int | None = None
    vfm_embed_dim: int | None = None
    vfm_depth: int | None = None
    vfm_num_heads: int | None = None
    vfm_qkv_bias: bool | None = None
    beta: float = BETA
    gamma: float = GAMMA

    def __post_init__(self) -> None:
        vfm_spec(self.vfm)  # raises, listing the valid names
        if not self.gamma > 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")


def vfm_input(
    images: Tensor,
    clip_mean: Sequence[float],
    clip_std: Sequence[float],
    vfm_mean: Sequence[float],
    vfm_std: Sequence[float],
) -> Tensor:
    """The VFM's input from CLIP-normalised images (PX:113-116), with the released arithmetic.

    Per channel ``x * std + mean`` with Python-float scalars (``myutils.UnNormalize``: ``t.mul_(s).add_(m)``),
    then ``(x - mean) / std`` with tensors of the input's dtype (torchvision ``Normalize``).

    Args:
        images: (B, 3, H, W) normalised with ``clip_mean`` / ``clip_std``.
    """
    raw = torch.stack(
        [images[:, c] * float(s) + float(m) for c, (m, s) in enumerate(zip(clip_mean, clip_std))], 1
    )
    mean = torch.as_tensor(vfm_mean, dtype=raw.dtype, device=raw.device)[:, None, None]
    std = torch.as_tensor(vfm_std, dtype=raw.dtype, device=raw.device)[:, None, None]
    return (raw - mean) / std


def proxy_affinity(feats: Tensor, beta: float = BETA, gamma: float = GAMMA) -> Tensor:
    """The proxy attention weights of each window (OC:569-578).

    Args:
        feats: (B, C, h, w) VFM features.
        beta: shift factor.
        gamma: scale factor.

    Returns:
        (B, h·w, h·w) softmax rows (queries x keys), shared by every head.
    """
    f = F.normalize(feats.flatten(2, 3), dim=1)
    sim = torch.einsum("b c m, b c n -> b m n", f, f)
    # one mean over a window's whole matrix, as the released code (batch 1) takes it over all of it
    means = torch.stack([s.mean() for s in sim])
    sim = (sim - (means * beta)[:, None, None]) * gamma
    sim = sim.masked_fill(sim < 0.0, float("-inf"))
    return F.softmax(sim, dim=-1)


def proxy_attention(
    v: Tensor, clip_grid: tuple[int, int], feats: Tensor, beta: float = BETA, gamma: float = GAMMA
) -> Tensor:
    """The proxy attention of CLIP's last block before ``out_proj`` (OC:560-585).

    Args:
        v: (B, heads, N, head_dim) CLIP's v of the patch tokens (no [CLS]), N = rows x cols of ``clip_grid``.
        clip_grid: CLIP's patch grid (rows, cols).
        feats: (B, C, h, w) VFM features of the same windows.
        beta: shift factor.
        gamma: scale factor.

    Returns:
        (B, h·w, heads·head_dim) the heads' outputs concatenated, on the VFM grid.
    """
    b, heads, _, hd = v.shape
    rows, cols = clip_grid
    h, w = feats.shape[-2:]
    attn = proxy_affinity(feats, beta, gamma)
    # v of every head as channels of one map (bilinear resizing is per channel): (B, heads·hd, rows, cols)
    grid = v.permute(0, 2, 1, 3).reshape(b, rows, cols, heads * hd).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
    values = grid.permute(0, 2, 3, 1).reshape(b, h * w, heads * hd)
    # the same weights for every head: one product with the heads' values side by side
    return torch.bmm(attn.to(values.dtype), values)


@METHODS.register("ProxyCLIP")
class ProxyCLIP(DenseMethod):
    """ProxyCLIP: CLIP's last attention from a vision foundation model's affinity (module docstring).

    Holds the VFM (:class:`~cliptrase.models.vfm.DinoViT`), built from ``method.params`` when the method is
    built; it moves with ``.to(device)``.
    """

    Options = ProxyCLIPOptions
    default_last_block = LastBlockSpec(keep_residual=False, keep_ffn=False)

    def __init__(self, cfg: Any, dataset: str | None = None) -> None:
        super().__init__(cfg, dataset)
        o = self.options
        self.vfm = build_dino(
            o.vfm,
            weights=o.vfm_weights,
            cache_dir=o.vfm_cache_dir,
            patch_size=o.vfm_patch_size,
            embed_dim=o.vfm_embed_dim,
            depth=o.vfm_depth,
            num_heads=o.vfm_num_heads,
            qkv_bias=o.vfm_qkv_bias,
        )

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """``method.params`` against :class:`ProxyCLIPOptions` (VFM name, gamma), no [CLS] product."""
        super().check_config(cfg)
        if getattr(cfg, "cls_product", None):
            raise ValueError(
                "method.cls_product=true is not ProxyCLIP's: it has no [CLS] output (set it false)"
            )
        method_options(cls.Options, getattr(cfg, "params", {}) or {}, cls.__name__)

    def features(self, tower: DenseEncoder, state: TowerState, ctx: MethodContext) -> DenseFeatures:
        """VFM features of the windows, the proxy attention in CLIP's last block, the head."""
        o = self.options
        feats = self.vfm(vfm_input(ctx.images, ctx.mean, ctx.std, self.vfm.mean, self.vfm.std))
        block = tower.block(-1)
        _, _, v = project_qkv(block.attn, block.ln_1(state.x))
        out = proxy_attention(v[:, :, 1:], state.grid_hw, feats, o.beta, o.gamma)
        patches = tower.head(block.attn.out_proj(out))
        vanilla, _ = tower.run_block(-1, state.x, LastBlockSpec(), state.grid_hw)
        cls = tower.head(vanilla[:, :1])
        return DenseFeatures(tokens=torch.cat([cls, patches], dim=1), grid_hw=tuple(feats.shape[-2:]))
