"""Dense forward of an open_clip ViT: projected, L2-normalised tokens, q/k/v of chosen blocks, and a
replaceable attention rule for the last block — built as small functions over open_clip's modules and
weights, without modifying the model (docs/style.md §3.2).

Call graph of :meth:`DenseEncoder.__call__`::

    embed_patches (conv1, [CLS], positional table for this grid, ln_pre)
      -> blocks[:-1]: open_clip's own block forward, except blocks listed in ``collect``,
                      which run through :func:`run_block` (vanilla rule) to expose their q, k, v
      -> blocks[-1]:  :func:`run_block` with the rule of ``LastBlockSpec``
      -> ln_post on all tokens, @ proj, L2-normalise

Block indices are negative and relative to depth (``-2`` = the block before the last), so 12-, 24- and
32-block towers behave alike; they are checked against the depth when the encoder is built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cliptrase.models.attention import ATTENTION

logger = logging.getLogger(__name__)

PAPER_POS_OFFSET = 0.1
"""The DINO ``+0.1`` offset of the authors' positional-embedding interpolation (docs/method.md §2.3)."""


@dataclass(frozen=True)
class LastBlockSpec:
    """How the last block is computed.

    Attributes:
        attention: name of a rule in :data:`cliptrase.models.attention.ATTENTION`.
        keep_residual: add the block input to the attention output (CLIPtrase keeps it, docs/method.md §4 C).
        keep_ffn: apply the block's MLP with its residual after the attention (CLIPtrase keeps it).
        params: extra keyword arguments of the rule as sorted (name, value) pairs (e.g. NACLIP's
            ``gaussian_std``), kept hashable so the spec stays frozen.
    """

    attention: str = "vanilla"
    keep_residual: bool = True
    keep_ffn: bool = True
    params: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        ATTENTION.get(self.attention)  # raises KeyError listing valid rules
        object.__setattr__(self, "params", tuple(sorted(dict(self.params).items())))


@dataclass
class DenseFeatures:
    """Output of the dense forward.

    Attributes:
        tokens: (B, 1 + N, E) projected tokens, [CLS] first, patches in row-major grid order;
            L2-normalised unless the encoder was called with ``normalize=False``.
        grid_hw: patch grid (h, w), N = h * w.
        qkv: per collected block (negative index): q, k, v of shape (B, heads, 1 + N, head_dim).
    """

    tokens: Tensor
    grid_hw: tuple[int, int]
    qkv: dict[int, tuple[Tensor, Tensor, Tensor]] = field(default_factory=dict)

    @property
    def cls(self) -> Tensor:
        """(B, E) [CLS] token."""
        return self.tokens[:, 0]

    @property
    def patches(self) -> Tensor:
        """(B, N, E) patch tokens."""
        return self.tokens[:, 1:]


def resample_pos_embed(
    pos: Tensor, grid_hw: tuple[int, int], *, offset: float | None = PAPER_POS_OFFSET
) -> Tensor:
    """Positional table for a patch grid, exactly as the authors' ``interpolate_pos_encoding``.

    docs/method.md §2.3: if the grid equals the stored one the table is used as is; otherwise the patch part,
    as a (1, D, g0, g0) image, is resized with ``F.interpolate(mode="bicubic", align_corners=False,
    scale_factor=((h + offset) / g0, (w + offset) / g0))`` — the DINO ``+0.1`` trick, which gives different
    numbers from resizing to ``size=(h, w)`` — and the [CLS] row is kept. ``offset=None`` resizes by size.

    Args:
        pos: (1 + g0 * g0, D) stored table.
        grid_hw: target grid (h, w).
        offset: the scale-factor offset, or None for plain ``size=`` resizing.

    Returns:
        (1 + h * w, D) table.
    """
    n_stored = pos.shape[0] - 1
    g0 = round(n_stored**0.5)
    if g0 * g0 != n_stored:
        raise ValueError(f"positional table with {n_stored} patch rows is not a square grid")
    h, w = grid_hw
    if (h, w) == (g0, g0):
        return pos
    dim = pos.shape[1]
    grid = pos[1:].float().reshape(1, g0, g0, dim).permute(0, 3, 1, 2)
    if offset is None:
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    else:
        factor = ((h + offset) / g0, (w + offset) / g0)
        grid = F.interpolate(grid, scale_factor=factor, mode="bicubic", align_corners=False)
    if grid.shape[-2:] != (h, w):
        raise AssertionError(f"interpolated grid {tuple(grid.shape[-2:])} != requested {(h, w)}")
    grid = grid.permute(0, 2, 3, 1).reshape(h * w, dim).to(pos.dtype)
    return torch.cat([pos[:1], grid], dim=0)


def project_qkv(attn: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v of an attention module for batch-first tokens ``x`` (B, L, D).

    Uses the ``in_proj_weight`` / ``in_proj_bias`` of ``nn.MultiheadAttention`` (and of open_clip's
    ``Attention``, which keeps those names), so q, k, v are taken after the input projection with bias and
    before scaling, as in the authors' ``attn2.py``.

    Returns:
        q, k, v, each (B, heads, L, head_dim).
    """
    b, n, d = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


def run_block(
    block: nn.Module, x: Tensor, spec: LastBlockSpec, grid_hw: tuple[int, int]
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """One pre-LN residual block with the attention rule of ``spec``, from the block's own submodules.

    ``x = x + ls_1(out_proj(rule(q, k, v)))`` (or without ``x +`` when ``keep_residual`` is False), then
    ``x = x + ls_2(mlp(ln_2(x)))`` when ``keep_ffn`` — the structure of open_clip's
    ``ResidualAttentionBlock`` and of the authors' ``model.py:191-195``.

    Args:
        block: an open_clip residual attention block (read, never modified).
        x: (B, L, D) batch-first tokens.
        spec: the rule and what to keep.
        grid_hw: patch grid, passed to rules that need it.

    Returns:
        The block output (B, L, D) and the block's q, k, v.
    """
    attn = block.attn
    q, k, v = project_qkv(attn, block.ln_1(x))
    head_dim = q.shape[-1]
    rule = ATTENTION.get(spec.attention)
    out = rule(q, k, v, scale=head_dim**-0.5, grid_hw=grid_hw, **dict(spec.params))
    b, _, n, _ = out.shape
    out = attn.out_proj(out.transpose(1, 2).reshape(b, n, -1))
    out = block.ls_1(out)
    x = x + out if spec.keep_residual else out
    if spec.keep_ffn:
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, (q, k, v)


def _check_supported(visual: nn.Module) -> None:
    if not hasattr(visual, "conv1") or not hasattr(visual, "transformer"):
        raise ValueError(f"{type(visual).__name__} is not an open_clip VisionTransformer (ViT towers only)")
    if getattr(visual, "attn_pool", None) is not None:
        raise ValueError("open_clip ViTs with attentional pooling (CoCa) are not supported")
    if getattr(visual, "final_ln_after_pool", False):
        raise ValueError("open_clip ViTs with final_ln_after_pool=True are not supported")
    for blk in visual.transformer.resblocks:
        attn = blk.attn
        if getattr(attn, "scaled_cosine", False) or getattr(attn, "scale_heads", False):
            raise ValueError(
                "open_clip blocks with scaled-cosine attention or head scaling are not supported"
            )
        if getattr(attn, "in_proj_weight", None) is None:
            raise ValueError(f"attention module {type(attn).__name__} has no fused in_proj_weight")


class DenseEncoder:
    """Dense image encoder over an open_clip ``VisionTransformer`` (held by reference, never modified).

    Args:
        visual: ``model.visual`` of an open_clip CLIP ViT.
        pos_offset: offset of the positional-table interpolation (``0.1`` = the authors'; ``None`` = resize
            to the grid size).
        compile: run the unmodified leading blocks (those before the first collected or modified block:
            blocks 1..d-2 for CLIPtrase) through ``torch.compile``; the first call per input shape compiles
            (seconds to minutes).
    """

    def __init__(
        self, visual: nn.Module, *, pos_offset: float | None = PAPER_POS_OFFSET, compile: bool = False
    ) -> None:
        _check_supported(visual)
        self.visual = visual
        self.pos_offset = pos_offset
        self.compiled = compile
        # the unmodified leading blocks (the bulk of the compute) as one function; torch.compile'd on request
        self._trunk = torch.compile(self._run_trunk) if compile else self._run_trunk
        self.depth = len(visual.transformer.resblocks)
        ps = visual.conv1.kernel_size
        self.patch_size: tuple[int, int] = (int(ps[0]), int(ps[1]))
        self.num_heads = int(visual.transformer.resblocks[0].attn.num_heads)
        self.width = int(visual.conv1.out_channels)
        self._batch_first = bool(getattr(visual.transformer, "batch_first", True))
        self._pos_cache: dict[tuple, Tensor] = {}

    def block_index(self, index: int) -> int:
        """Normalise a block index (negative = relative to depth) to 0-based, checking the range."""
        if not -self.depth <= index < self.depth:
            raise ValueError(f"block index {index} is outside a {self.depth}-block tower")
        return index % self.depth

    def pos_embed(self, grid_hw: tuple[int, int]) -> Tensor:
        """Positional table for ``grid_hw``, computed once per grid, device and dtype."""
        table = self.visual.positional_embedding
        key = (grid_hw, table.device, table.dtype, table.data_ptr())
        if key not in self._pos_cache:
            self._pos_cache[key] = resample_pos_embed(table.detach(), grid_hw, offset=self.pos_offset)
        return self._pos_cache[key]

    def embed(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Patch embedding + [CLS] + positional table + ``ln_pre``: (B, 3, H, W) -> (B, 1 + N, D)."""
        ph, pw = self.patch_size
        if images.shape[-2] % ph or images.shape[-1] % pw:
            raise ValueError(
                f"input {tuple(images.shape[-2:])} is not divisible by the patch size {(ph, pw)}; fit it "
                "first (cliptrase.inference.sliding.fit_to_patches: floor the grid or pad, protocol.pad_to)"
            )
        x = self.visual.conv1(images)
        grid_hw = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        cls = self.visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed(grid_hw).to(x.dtype)
        return self.visual.ln_pre(x), grid_hw

    def _run_trunk_block(self, block: nn.Module, x: Tensor) -> Tensor:
        if self._batch_first:
            return block(x)
        return block(x.transpose(0, 1)).transpose(0, 1)

    def _run_trunk(self, x: Tensor, stop: int) -> Tensor:
        """open_clip's own blocks ``0 .. stop-1`` on batch-first tokens."""
        if not self._batch_first:
            x = x.transpose(0, 1)
        for block in self.visual.transformer.resblocks[:stop]:
            x = block(x)
        return x if self._batch_first else x.transpose(0, 1)

    def __call__(
        self,
        images: Tensor,
        spec: LastBlockSpec,
        *,
        collect: Sequence[int] = (),
        normalize: bool = True,
    ) -> DenseFeatures:
        """Run the tower on ``images`` (B, 3, H, W) with the last block computed as ``spec`` says.

        Args:
            images: normalised images; H and W multiples of the patch size.
            spec: the last block's rule.
            collect: negative block indices whose q, k, v are returned (the last block's always can be).
            normalize: L2-normalise the projected tokens.
        """
        last = self.depth - 1
        wanted = {self.block_index(i): i for i in collect}
        x, grid_hw = self.embed(images)
        qkv: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        first = min([last, *wanted])  # blocks before it are open_clip's, unmodified
        if first:
            x = self._trunk(x, first)
        for idx in range(first, self.depth):
            block = self.visual.transformer.resblocks[idx]
            if idx == last:
                x, block_qkv = run_block(block, x, spec, grid_hw)
            elif idx in wanted:
                x, block_qkv = run_block(block, x, LastBlockSpec(), grid_hw)
            else:
                x = self._run_trunk_block(block, x)
                continue
            if idx in wanted:
                qkv[wanted[idx]] = block_qkv
        tokens = self.visual.ln_post(x) @ self.visual.proj
        if normalize:
            tokens = F.normalize(tokens, dim=-1)
        return DenseFeatures(tokens=tokens, grid_hw=grid_hw, qkv=qkv)
