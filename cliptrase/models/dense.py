"""The image tower as a method sees it: an open_clip ViT run block by block, computing only what the method
asked for (hidden states, q/k/v of any block, relative to depth), then handing the residual stream to the
method, which may run any block again with its own attention rule and project tokens through the head.
Built as small functions over open_clip's modules and weights, without modifying the model
(docs/style.md §3.2; the interface is docs/method.md "Adding a method").

Call graph of :meth:`DenseEncoder.run` (what every method calls first)::

    embed (conv1, [CLS], positional table for this grid, ln_pre)
      -> blocks before the first tapped one: open_clip's own block forward (torch.compile'd on request)
      -> blocks up to ``request.stop``: open_clip's forward, or :func:`run_block` (vanilla rule) where the
                                        request asks for that block's q, k, v; outputs kept where asked
      -> TowerState (the residual stream entering block ``stop``, the taps)

and of the methods' building blocks: :meth:`DenseEncoder.run_block` (any block, any registered attention
rule, residual / FFN kept or dropped) and :meth:`DenseEncoder.head` (``ln_post`` on all tokens, ``@ proj``,
L2-normalise). :meth:`DenseEncoder.__call__` chains them for the last-block methods.

Block indices are negative and relative to depth (``-2`` = the block before the last), so 12-, 24- and
32-block towers behave alike; they are checked against the depth when used.
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


@dataclass(frozen=True)
class TowerRequest:
    """What a method reads from the tower before it takes over; indices relative to depth (negative).

    Attributes:
        hidden: blocks whose output (the residual stream after the block, before ``ln_post``) is kept.
        qkv: blocks whose q, k, v (after ``ln_1`` and the input projection, before scaling) are kept; those
            blocks run through :func:`run_block` with the vanilla rule (the attention of any block follows
            from its q and k).
        stop: the first block the method runs itself; the tower runs blocks ``0 .. stop-1`` (``-1`` = all
            but the last). Every tapped block must lie before it.
    """

    hidden: tuple[int, ...] = ()
    qkv: tuple[int, ...] = ()
    stop: int = -1

    def __post_init__(self) -> None:
        for name in ("hidden", "qkv"):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))
        for index in (*self.hidden, *self.qkv, self.stop):
            if index >= 0:
                raise ValueError(f"tower block indices are relative to depth (< 0), got {index}")
        late = [i for i in (*self.hidden, *self.qkv) if i >= self.stop]
        if late:
            raise ValueError(f"blocks {late} are at or after stop={self.stop}: the method runs those itself")


@dataclass
class TowerState:
    """The tower's output for a method: the residual stream entering block ``stop`` and the taps.

    Attributes:
        x: (B, 1 + N, D) batch-first tokens entering block ``stop`` (not normalised, not projected).
        grid_hw: patch grid (h, w).
        stop: the request's ``stop`` (negative).
        hidden: per requested block (negative index): its output (B, 1 + N, D).
        qkv: per requested block (negative index): q, k, v, each (B, heads, 1 + N, head_dim).
    """

    x: Tensor
    grid_hw: tuple[int, int]
    stop: int
    hidden: dict[int, Tensor] = field(default_factory=dict)
    qkv: dict[int, tuple[Tensor, Tensor, Tensor]] = field(default_factory=dict)


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

    def run(self, images: Tensor, request: TowerRequest) -> TowerState:
        """Run blocks ``0 .. request.stop - 1`` on ``images`` (B, 3, H, W), keeping what ``request`` asks.

        Blocks before the first tapped one run as one unit (open_clip's own forward, compiled on request);
        a block whose q, k, v are asked runs through :func:`run_block` with the vanilla rule.
        """
        stop = self.block_index(request.stop)
        hidden = {self.block_index(i): i for i in request.hidden}
        wanted = {self.block_index(i): i for i in request.qkv}
        x, grid_hw = self.embed(images)
        first = min([stop, *wanted, *hidden])  # blocks before it are open_clip's, unmodified
        if first:
            x = self._trunk(x, first)
        state = TowerState(x=x, grid_hw=grid_hw, stop=request.stop)
        for idx in range(first, stop):
            block = self.visual.transformer.resblocks[idx]
            if idx in wanted:
                x, state.qkv[wanted[idx]] = run_block(block, x, LastBlockSpec(), grid_hw)
            else:
                x = self._run_trunk_block(block, x)
            if idx in hidden:
                state.hidden[hidden[idx]] = x
        state.x = x
        return state

    def block(self, index: int) -> nn.Module:
        """The open_clip block at ``index`` (relative to depth when negative); read, never modified."""
        return self.visual.transformer.resblocks[self.block_index(index)]

    def run_block(
        self, index: int, x: Tensor, spec: LastBlockSpec, grid_hw: tuple[int, int]
    ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Block ``index`` on batch-first tokens with the rule of ``spec`` (:func:`run_block`)."""
        return run_block(self.block(index), x, spec, grid_hw)

    def head(self, x: Tensor, *, normalize: bool = True) -> Tensor:
        """``ln_post`` on all tokens, ``@ proj``, L2-normalised unless ``normalize`` is False: (B, L, E)."""
        tokens = self.visual.ln_post(x) @ self.visual.proj
        return F.normalize(tokens, dim=-1) if normalize else tokens

    def __call__(
        self,
        images: Tensor,
        spec: LastBlockSpec,
        *,
        collect: Sequence[int] = (),
        normalize: bool = True,
    ) -> DenseFeatures:
        """The tower with its last block computed as ``spec`` says (the last-block methods' forward).

        Args:
            images: normalised images; H and W multiples of the patch size.
            spec: the last block's rule.
            collect: negative block indices whose q, k, v are returned (the last block's included).
            normalize: L2-normalise the projected tokens.
        """
        for index in collect:
            self.block_index(index)
        before_last = tuple(i for i in collect if i % self.depth != self.depth - 1)
        state = self.run(images, TowerRequest(qkv=before_last))
        x, last_qkv = self.run_block(-1, state.x, spec, state.grid_hw)
        qkv = dict(state.qkv)
        for index in collect:
            if index % self.depth == self.depth - 1:
                qkv[index] = last_qkv
        return DenseFeatures(tokens=self.head(x, normalize=normalize), grid_hw=state.grid_hw, qkv=qkv)
