"""SC-CLIP (Bai et al., arXiv 2411.15869): self-calibrated CLIP, as its released code computes it.

Source: ``github.com/SuleBai/SC-CLIP`` at ``0417ba9``, ``clip/model.py`` ``VisionTransformer.forward`` with
``return_all=True`` and its helpers (docs/methods.md "SC-CLIP" cites every line). The tower runs blocks
``0 .. L-2`` unchanged; :meth:`SCCLIP.features` then, for a batch of windows at once:

    X_{L-2}  -> lof_outliers             LOF (their variant) over the patch tokens, top ~5 % by quantile
             -> neighbour_fill           each outlier := mean of its valid, non-outlier 3x3 neighbours
    X_8      -> neighbour_fill, cosine   S_mid (same outliers); S_pre = S_mid with entries < 0.4 set to 0
    Z        -> aggregate(S_pre)         row-normalised S_pre @ Z
             -> last-block attention     (softmax(M_mid) + softmax(k kᵀ·s)) / 2, no residual, no FFN
             -> + 0.3 · [CLS] of X_{L-2}
    X_3      -> cosine                   S_post (not filled), entries < 0.4 set to 0
             -> aggregate(S_post)
    Σ X_3..X_9 -> last-block attention + 0.3 · its [CLS] -> aggregate(S_post) -> added
             -> ln_post, @ proj          patch tokens

The released code runs one window at a time (batch 1: ``x[1:].squeeze(1)``, one set of outlier indices,
``mid_simi.mean()`` over the whole tensor). Here every step is batched over windows and computes, per
window, what the batch-1 code computes (same operations, same layouts, per-window reductions); tested
equal window by window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cliptrase.method.interface import METHODS, DenseMethod, MethodContext
from cliptrase.models.dense import DenseEncoder, DenseFeatures, TowerRequest, TowerState

logger = logging.getLogger(__name__)

LOF_CHUNK_ELEMENTS = 1 << 26
"""Largest (windows x N x N x C) difference tensor the LOF distances build at once (256 MiB in fp32); the
windows are split into chunks below it (each window's distances are computed alike in any chunk)."""


@dataclass(frozen=True)
class SCCLIPOptions:
    """SC-CLIP's knobs; defaults are the released ones (ViT-B/16).

    Block indices are absolute (0-based, ``resblocks[i]``), as the released config states them
    (``configs/base_config.py:4-8``): the released code does not scale them with depth, so a 24-block tower
    runs with these same indices unless a config sets others (the authors' ViT-L/14 values, SC-CLIP#5:
    ``pre_adjust_idx=16, post_adjust_idx=6, multi_start_idx=8, multi_end_idx=19, res_cls=0.1``). Only
    the outlier step follows depth: it always acts on the output of block ``L-2``
    (``clip/model.py:272``).

    Attributes:
        pre_adjust_idx: block whose (outlier-filled) output gives the mid similarity (8, model.py:249).
        post_adjust_idx: block whose output gives the post-adjustment similarity (3, model.py:250).
        multi_start_idx: first block of the multi-level sum (3, model.py:251).
        multi_end_idx: end (exclusive) of the multi-level sum (10: blocks 3..9, model.py:252).
        res_cls: weight of the [CLS] token added to every token (0.3, model.py:253).
        beta: similarity threshold; entries below it are set to 0 (0.4, model.py:248; not configurable
            in the released code).
        lof_neighbors: LOF neighbours (30, model.py:274).
        lof_contamination: outlier fraction; threshold ``torch.quantile(scores, 1 - c)`` (0.05,
            model.py:222, 274).
        mid_scale: factor of the mean-centred mid similarity in the attention (3.0, model.py:329).
    """

    pre_adjust_idx: int = 8
    post_adjust_idx: int = 3
    multi_start_idx: int = 3
    multi_end_idx: int = 10
    res_cls: float = 0.3
    beta: float = 0.4
    lof_neighbors: int = 30
    lof_contamination: float = 0.05
    mid_scale: float = 3.0

    def __post_init__(self) -> None:
        if self.multi_start_idx >= self.multi_end_idx:
            raise ValueError(
                f"multi_start_idx ({self.multi_start_idx}) must be below multi_end_idx ({self.multi_end_idx})"
            )
        if min(self.pre_adjust_idx, self.post_adjust_idx, self.multi_start_idx) < 0:
            raise ValueError("SC-CLIP block indices are absolute (0-based), >= 0")
        if self.lof_neighbors < 1 or not 0 < self.lof_contamination < 1:
            raise ValueError("lof_neighbors must be >= 1 and 0 < lof_contamination < 1")


def lof_scores(tokens: Tensor, n_neighbors: int, *, chunk_elements: int = LOF_CHUNK_ELEMENTS) -> Tensor:
    """SC-CLIP's local outlier factor of every token, per window (``clip/model.py:208-220``).

    Their variant, not the textbook LOF: distances are *squared* Euclidean (the norm of the explicit
    difference, squared); the k nearest neighbours come from ``topk(k + 1, largest=False)`` with the first
    column (the token itself) dropped; the reachability distance is ``max(d(p, o), k_dist(p))`` with the
    k-distance of the query token ``p`` itself (textbook: of the neighbour ``o``), so every entry equals
    ``k_dist(p)``; ``lrd = k / mean(reach)``; ``LOF(p) = mean_o lrd(o) / lrd(p)``.

    Args:
        tokens: (B, N, C) patch tokens of B windows.
        n_neighbors: k (30).
        chunk_elements: bound on the difference tensor built at once (:data:`LOF_CHUNK_ELEMENTS`).

    Returns:
        (B, N) scores.

    Raises:
        ValueError: fewer than ``k + 1`` tokens (the released ``topk`` fails there too).
    """
    b, n, c = tokens.shape
    if n < n_neighbors + 1:
        raise ValueError(f"SC-CLIP's LOF needs more than {n_neighbors} tokens per window, got {n}")
    per_chunk = max(1, chunk_elements // max(1, n * n * c))
    distances = torch.cat(
        [torch.norm(part[:, :, None] - part[:, None, :], dim=3, p=2) ** 2 for part in tokens.split(per_chunk)]
    )
    knn_d, knn_i = torch.topk(distances, k=n_neighbors + 1, dim=-1, largest=False)
    knn_d, knn_i = knn_d[..., 1:], knn_i[..., 1:]
    k_dist = knn_d[..., -1:].expand_as(knn_d)
    reach = torch.max(knn_d, k_dist)
    lrd = n_neighbors / torch.nan_to_num(reach.mean(dim=-1), nan=1e-6)  # (B, N)
    neighbour_lrd = torch.gather(lrd[:, None, :].expand(b, n, n), 2, knn_i)  # lrd[knn_i] per window
    return (neighbour_lrd / lrd[..., None]).mean(dim=-1)


def lof_outliers(tokens: Tensor, n_neighbors: int = 30, contamination: float = 0.05) -> tuple[Tensor, Tensor]:
    """Outlier mask and LOF scores per window (``clip/model.py:208-227``): a token is an outlier when its
    score is *strictly* above ``torch.quantile(scores, 1 - contamination)`` (linear interpolation) of its
    window; with N = 196 and distinct scores, the 10 highest. Equal scores at the threshold give fewer;
    all scores equal give none.

    Returns:
        (B, N) bool mask, (B, N) scores.
    """
    scores = lof_scores(tokens, n_neighbors)
    threshold = torch.quantile(scores.to(torch.float32), 1 - contamination, dim=-1, keepdim=True)
    return scores > threshold, scores


def neighbour_fill(tokens: Tensor, outliers: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """Every outlier token replaced by the mean of its 3x3 neighbours (``mean_interpolation``,
    ``clip/model.py:348-373``), per window.

    The centre is excluded; positions outside the grid (zero padding) and outlier neighbours are not
    counted; all outliers are replaced at once from the original values; an outlier without a valid
    neighbour keeps its value; other tokens are unchanged. Computed as the released code does: a depthwise
    3x3 convolution of ones (centre 0) over the zero-padded, outlier-masked map, divided by the same
    convolution of the mask.

    Args:
        tokens: (B, N, C) patch tokens, row-major over ``grid_hw``.
        outliers: (B, N) bool.
        grid_hw: (h, w) patch grid. Token ``i`` sits at row ``i // w``, column ``i % w``; the released code
            uses ``i // h, i % h`` (correct only for square grids, docs/methods.md "SC-CLIP").

    Returns:
        (B, N, C).
    """
    b, n, c = tokens.shape
    h, w = grid_hw
    # channels-last (B, C, h, w) view of contiguous tokens: the layout the released code convolves
    fmap = tokens.contiguous().permute(0, 2, 1).reshape(b, c, h, w)
    keep = (~outliers).to(tokens.dtype).reshape(b, 1, h, w)
    kernel = torch.ones(c, 1, 3, 3, dtype=tokens.dtype, device=tokens.device)
    kernel[:, 0, 1, 1] = 0
    neighbour_sum = F.conv2d(F.pad(fmap * keep, (1, 1, 1, 1)), kernel, groups=c)
    valid = F.conv2d(F.pad(keep, (1, 1, 1, 1)), kernel[:1])
    mean = neighbour_sum / valid.masked_fill(valid == 0, 1)
    update = outliers.reshape(b, 1, h, w) & (valid > 0)
    filled = torch.where(update, mean, fmap)
    # (B, N, C) with C innermost, as the released code's (N, B, C) view: the channel norms that follow
    # reduce over contiguous memory (a strided reduction sums in another order)
    return filled.reshape(b, c, n).permute(0, 2, 1).contiguous()


def cosine_similarity(tokens: Tensor) -> Tensor:
    """(B, N, N) cosine similarity of (B, N, C) tokens, ``f / f.norm()`` (no eps) as ``model.py:284-285``."""
    f = tokens / tokens.norm(dim=-1, keepdim=True)
    return f @ f.transpose(-2, -1)


def threshold_similarity(similarity: Tensor, beta: float) -> Tensor:
    """A copy with entries below ``beta`` set to 0 (``model.py:287, 296``)."""
    return similarity.masked_fill(similarity < beta, 0.0)


def aggregate(tokens: Tensor, similarity: Tensor) -> Tensor:
    """``(S / (S.sum(-1) + 1e-6)) @ tokens`` (``adaptively_aggregate``, ``model.py:343-346``)."""
    return (similarity / (similarity.sum(dim=-1, keepdim=True) + 1e-6)) @ tokens


def mid_attention(similarity: Tensor, scale: float) -> Tensor:
    """The similarity half of the last block's attention, (B, 1, N, N) (``custom_attn``,
    ``model.py:329-332``): ``softmax(M)`` with ``M = (S - mean(S)) · scale`` and ``M < 0`` -> ``-inf``.
    The mean is over all N x N entries of each window's S (diagonal included), computed window by window
    as the batch-1 code does."""
    means = torch.stack([s.mean() for s in similarity]).reshape(-1, 1, 1)
    centred = (similarity - means) * scale
    centred = centred.masked_fill(centred < 0.0, float("-inf"))
    return torch.softmax(centred, dim=-1)[:, None]


def scclip_attention(block: nn.Module, x: Tensor, mid_softmax: Tensor) -> Tensor:
    """The last block's attention only, on (B, N, C) tokens (``custom_attn``, ``model.py:318-341``):
    ``out_proj(concat_h A_h v_h)`` with ``A_h = (softmax(M) + softmax(k_h k_hᵀ · d_h^-0.5)) / 2``, k and v
    from ``in_proj(ln_1(x))`` (q unused); no residual, no FFN."""
    attn = block.attn
    b, n, c = x.shape
    heads = attn.num_heads
    head_dim = c // heads
    _, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    k = k.reshape(b, n, heads, head_dim).transpose(1, 2)
    v = v.reshape(b, n, heads, head_dim).transpose(1, 2)
    weights = mid_softmax + torch.softmax((k @ k.transpose(-2, -1)) * head_dim**-0.5, dim=-1)
    weights = weights / 2
    out = (weights @ v).transpose(1, 2).reshape(b, n, c)
    return attn.out_proj(out)


def multi_level_sum(hidden: list[Tensor]) -> Tensor:
    """``0 + X_start + X_start+1 + ...`` in block order, [CLS] included (``model.py:299-301``)."""
    total = torch.zeros_like(hidden[0])
    for h in hidden:
        total = total + h
    return total


@METHODS.register("SCCLIP")
class SCCLIP(DenseMethod):
    """SC-CLIP's dense forward (module docstring; docs/methods.md "SC-CLIP").

    The released forward returns patch tokens only; :class:`DenseFeatures` has a [CLS] row first, so row 0
    is a placeholder: the [CLS] token of block ``L-2`` through ``ln_post`` and ``proj`` (SC-CLIP computes
    no final [CLS]; only a ``cls_product`` labelling would read it, and no SC-CLIP preset sets one).
    """

    Options = SCCLIPOptions

    @classmethod
    def check_config(cls, cfg) -> None:
        super().check_config(cfg)
        if getattr(cfg, "cls_product", None):
            raise ValueError("method.cls_product=true: SC-CLIP computes no final [CLS] token (set it false)")

    def _indices(self, depth: int) -> tuple[int, int, list[int]]:
        """(pre, post, multi) as indices relative to ``depth``; each must be a block before the last."""
        o = self.options
        multi = list(range(o.multi_start_idx, o.multi_end_idx))
        for i in (o.pre_adjust_idx, o.post_adjust_idx, *multi):
            if i > depth - 2:
                raise ValueError(
                    f"SC-CLIP block index {i} is not before the last block of a {depth}-block tower "
                    "(method.params pre_adjust_idx / post_adjust_idx / multi_*_idx)"
                )
        return o.pre_adjust_idx - depth, o.post_adjust_idx - depth, [i - depth for i in multi]

    def request(self, depth: int) -> TowerRequest:
        pre, post, multi = self._indices(depth)
        taps = {pre, post, *multi} - {-2}  # block L-2's output is the state itself
        return TowerRequest(hidden=tuple(taps), stop=-1)

    def features(self, tower: DenseEncoder, state: TowerState, ctx: MethodContext) -> DenseFeatures:
        o = self.options
        pre, post, multi = self._indices(tower.depth)
        hidden = {**state.hidden, -2: state.x}
        grid_hw = state.grid_hw
        last = tower.block(-1)

        x = state.x  # output of block L-2
        cls = x[:, :1]
        outliers, _ = lof_outliers(x[:, 1:], o.lof_neighbors, o.lof_contamination)
        if not bool(outliers.any(dim=1).all()):
            logger.debug("SC-CLIP: a window has no LOF outlier (the released code raises there)")
        z = neighbour_fill(x[:, 1:], outliers, grid_hw)

        s_mid = cosine_similarity(neighbour_fill(hidden[pre][:, 1:], outliers, grid_hw))
        mid_softmax = mid_attention(s_mid, o.mid_scale)
        y = aggregate(z, threshold_similarity(s_mid, o.beta))
        y = scclip_attention(last, y, mid_softmax) + o.res_cls * cls

        s_post = threshold_similarity(cosine_similarity(hidden[post][:, 1:]), o.beta)
        y = aggregate(y, s_post)

        r = multi_level_sum([hidden[i] for i in multi])
        r = scclip_attention(last, r[:, 1:], mid_softmax) + o.res_cls * r[:, :1]
        y = y + aggregate(r, s_post)

        tokens = torch.cat([cls, y], dim=1)  # placeholder [CLS] row (class docstring)
        return DenseFeatures(tokens=tower.head(tokens), grid_hw=grid_hw)
