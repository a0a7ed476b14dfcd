"""ResCLIP (Yang et al., CVPR 2025): residual cross-correlation self-attention (RCS) and semantic feedback
refinement (SFR) on top of a training-free last block (NACLIP by default; SCLIP, ClearCLIP, vanilla).

Written from the released code's behaviour (``yvhangyang/ResCLIP@0e085f7``, docs/methods.md "ResCLIP", every
constant cited there); computes what ``clip/model.py`` ``VisionTransformer.forward`` computes, per window,
on CPU in fp32. Call graph of :meth:`ResCLIP.features`::

    embed                              (the tower: conv1, [CLS], (g+0.1)/g0 positional table, ln_pre)
    blocks 0 .. D-2: explicit_block    softmax(bmm(q·s, kᵀ)) per head, maps kept       model.py:318-323
    rcs_map                            mean of the maps of rcs_blocks (5..8)           model.py:326-332
    first pass of the last block       resclip_attention without SFR                   model.py:242-260
    first_prediction                   cos vs the prompts, bilinear to the window, PAMR(10, (8, 16)),
                                       softmax(40·) over prompts                       model.py:262-290
    patch_labels                       argmax, temp_thd -> prompt 0, mode per p×p      model.py:106-126
    sfr_matrix                         same-label mask, check_path decay, 1-D blur,
                                       row-normalise                                    model.py:130-240
    final pass of the last block       resclip_attention with SFR and RCS              model.py:349-362
    head                               ln_post, @ proj, L2-normalise                    model.py:364-367

The released code is batch-1; here windows are batched, and everything that is per window in the release
(the SFR matrix, its global maximum) is per window here, so each window's result equals a batch of one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cliptrase.method.interface import METHODS, DenseMethod, MethodContext, method_options
from cliptrase.method.pamr import pamr
from cliptrase.models.dense import DenseEncoder, DenseFeatures, TowerRequest, TowerState, project_qkv

logger = logging.getLogger(__name__)

BASE_ATTENTIONS = ("naclip", "sclip", "clearclip", "vanilla")
"""The released ``attn_strategy`` values (``model.py:473-585``; ``resclip`` is the ``naclip`` branch)."""

ARCHS = ("wo_resi", "w_resi")
"""``wo_resi``: the last block without residual and FFN (NACLIP, ClearCLIP); ``w_resi``: with both (SCLIP)."""


@dataclass(frozen=True)
class ResCLIPOptions:
    """ResCLIP's knobs; defaults are the released ones (``test_all.sh wo_resi resclip 5``).

    Attributes:
        attention: the base rule of the last block: ``naclip`` (main result; ``attn_strategy='resclip'`` is
            the same code), ``sclip`` (needs ``arch='w_resi'``), ``clearclip`` or ``vanilla``.
        arch: ``wo_resi`` (no residual, no FFN in the last block) or ``w_resi``.
        gaussian_std: σ of NACLIP's neighbourhood term Ω and of the SFR blur (released: one knob, 5).
        rcs_blocks: blocks whose attention maps RCS averages. Non-negative indices count from the input, as
            the release does on every depth (5..8, also on a 24-block ViT-L/14); negative ones are relative
            to depth.
        attn_rcs_weights: (τr, λr) of ``A <- τr((1-λr)A + λr R)`` (per dataset in the release).
        attn_sfr_weights: (τs, λs) of ``A <- τs((1-λs)A + λs S)`` before the softmax (per dataset).
        temp_thd: first-prediction pixels whose max probability is below it take prompt 0 (per dataset).
        delete_same_entity: decay same-label pairs not connected by a same-label path (True everywhere).
        sfr_logit_scale: temperature of the first prediction's softmax (the segmentor's ``logit_scale``, 40).
        sfr_pamr_steps: PAMR steps on the first prediction (10, ``model.py:279``).
        sfr_pamr_dilations: PAMR dilations on the first prediction ((8, 16)).
    """

    attention: str = "naclip"
    arch: str = "wo_resi"
    gaussian_std: float = 5.0
    rcs_blocks: tuple[int, ...] = (5, 6, 7, 8)
    attn_rcs_weights: tuple[float, float] = (2.0, 0.3)
    attn_sfr_weights: tuple[float, float] = (2.1, 0.7)
    temp_thd: float = 0.25
    delete_same_entity: bool = True
    sfr_logit_scale: float = 40.0
    sfr_pamr_steps: int = 10
    sfr_pamr_dilations: tuple[int, ...] = (8, 16)

    def __post_init__(self) -> None:
        for name in ("rcs_blocks", "attn_rcs_weights", "attn_sfr_weights", "sfr_pamr_dilations"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.attention not in BASE_ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(BASE_ATTENTIONS)}, got {self.attention!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.attention == "sclip" and self.arch != "w_resi":
            raise ValueError("attention='sclip' needs arch='w_resi' (ResCLIP model.py:102)")
        if not self.gaussian_std > 0:
            raise ValueError(f"gaussian_std must be > 0, got {self.gaussian_std}")
        if not self.rcs_blocks:
            raise ValueError("rcs_blocks must name at least one block")
        for name in ("attn_rcs_weights", "attn_sfr_weights"):
            if len(getattr(self, name)) != 2:
                raise ValueError(f"{name} must be (tau, lambda), got {getattr(self, name)}")


# -- the pieces, each a pure function ------------------------------------------------------------------------


def explicit_block(block: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """One pre-LN block with explicit vanilla attention, as the release runs blocks 0..D-2.

    ``A = softmax(bmm(q·s, kᵀ))`` per head (``model.py:590-592``), ``x + out_proj(A v)``, then
    ``x + mlp(ln_2(x))`` (``model.py:318-323``).

    Returns:
        The block output (B, L, D) and its attention maps (B, heads, L, L).
    """
    q, k, v = project_qkv(block.attn, block.ln_1(x))
    scale = q.shape[-1] ** -0.5
    attn = torch.softmax((q * scale) @ k.transpose(-2, -1), dim=-1)
    x = x + block.ls_1(_merge_heads(block.attn, attn @ v))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, attn


def _merge_heads(attn_module: nn.Module, out: Tensor) -> Tensor:
    """(B, heads, L, head_dim) -> ``out_proj`` of the concatenated heads, (B, L, D)."""
    b, _, n, _ = out.shape
    return attn_module.out_proj(out.transpose(1, 2).reshape(b, n, -1))


def rcs_map(maps: list[Tensor]) -> Tensor:
    """RCS: the plain mean of the chosen blocks' per-head attention maps (``model.py:328-329``)."""
    return torch.stack(maps).mean(dim=0)


@torch.no_grad()
def gaussian_window(dims: tuple[int, int], std: float) -> Tensor:
    """NACLIP's (dim1, dim2) float32 window ``exp(-(y² + x²))`` on float32 ``linspace`` grids scaled by
    ``1/(σ√2)`` (``model.py:398-410``)."""
    constant = 1 / (std * math.sqrt(2))
    axes = []
    for dim in dims:
        start = -(dim - 1) / 2.0
        end = (start + (dim - 1)) * constant
        axes.append(torch.linspace(start * constant, end, dim, dtype=torch.float32))
    yy, xx = torch.meshgrid(*axes, indexing="ij")
    return torch.exp(-(torch.stack((yy, xx)) ** 2).sum(0))


_OMEGA_CACHE: dict[tuple, Tensor] = {}


def neighbourhood_term(grid_hw: tuple[int, int], std: float, device: torch.device) -> Tensor:
    """Ω (1 + N, 1 + N) of the release: ``Ω[p, q] = window[Δrow + h - 1, Δcol + w - 1]`` of
    :func:`gaussian_window` ((2h-1) × (2w-1)), [CLS] row and column 0 (``model.py:414-424, 464-471``).

    The release builds it as a 'same' convolution of one-hot maps, which picks exactly these float32
    values; the float64 closed form of :func:`cliptrase.models.attention.neighbourhood_bias` differs from
    them in the last bit. Cached per key; never modify the result in place.
    """
    key = (tuple(grid_hw), float(std), device)
    if key not in _OMEGA_CACHE:
        h, w = grid_hw
        window = gaussian_window((2 * h - 1, 2 * w - 1), std)
        rows = torch.arange(h).repeat_interleave(w)
        cols = torch.arange(w).repeat(h)
        omega = torch.zeros(1 + h * w, 1 + h * w)
        omega[1:, 1:] = window[rows[None, :] - rows[:, None] + h - 1, cols[None, :] - cols[:, None] + w - 1]
        _OMEGA_CACHE[key] = omega.to(device)
    return _OMEGA_CACHE[key]


def _mix(attn: Tensor, extra: Tensor, weights: tuple[float, float]) -> Tensor:
    """``τ((1-λ)A + λE)`` in the release's order of operations."""
    tau, lam = weights
    return tau * ((1 - lam) * attn + lam * extra)


def resclip_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    attention: str,
    grid_hw: tuple[int, int],
    gaussian_std: float,
    rcs: Tensor | None,
    rcs_weights: tuple[float, float],
    sfr: Tensor | None = None,
    sfr_weights: tuple[float, float] | None = None,
) -> Tensor:
    """The last block's attention of the release (``custom_attn``, ``model.py:451-604``), before ``out_proj``.

    ``sfr`` (B, 1, L, L) per window is divided by its own maximum and cast to **float16** (even in fp32),
    ``λs·S16`` is computed in float16 and promoted when added (``model.py:477-484``). ``naclip``: ``s·kkᵀ``,
    SFR mix, ``+ Ω``, softmax, RCS mix; ``sclip``: SFR mixed into ``s·qqᵀ`` and ``s·kkᵀ`` separately, sum of
    the softmaxes, no Ω; ``clearclip``: ``s·qqᵀ``; ``vanilla``: ``(q·s)kᵀ``; the last two without Ω. RCS:
    ``τr((1-λr)A + λr R)`` with R (B, heads, L, L) (rows then sum to τr).

    Returns:
        (B, heads, L, head_dim) = ``A v``.
    """
    scale = q.shape[-1] ** -0.5
    if sfr is not None:
        sfr = (sfr / sfr.amax(dim=(-2, -1), keepdim=True)).to(torch.float16)
        if sfr_weights is None:
            raise ValueError("resclip_attention: sfr given without sfr_weights")

    def with_sfr(logits: Tensor) -> Tensor:
        return logits if sfr is None else _mix(logits, sfr, sfr_weights)

    if attention == "naclip":
        logits = with_sfr((k @ k.transpose(-2, -1)) * scale)
        logits += neighbourhood_term(grid_hw, gaussian_std, k.device)
        attn = torch.softmax(logits, dim=-1)
    elif attention == "sclip":
        q_logits = with_sfr((q @ q.transpose(-2, -1)) * scale)
        k_logits = with_sfr((k @ k.transpose(-2, -1)) * scale)
        attn = torch.softmax(q_logits, dim=-1) + torch.softmax(k_logits, dim=-1)
    elif attention == "clearclip":
        attn = torch.softmax(with_sfr((q @ q.transpose(-2, -1)) * scale), dim=-1)
    elif attention == "vanilla":
        attn = torch.softmax(with_sfr((q * scale) @ k.transpose(-2, -1)), dim=-1)
    else:
        raise ValueError(f"unknown ResCLIP base attention {attention!r}; valid: {', '.join(BASE_ATTENTIONS)}")
    if rcs is not None:
        attn = _mix(attn, rcs, rcs_weights)
    return attn @ v


def first_prediction(
    tokens: Tensor,
    text: Tensor,
    grid_hw: tuple[int, int],
    window: Tensor,
    *,
    logit_scale: float,
    pamr_steps: int,
    pamr_dilations: tuple[int, ...],
) -> Tensor:
    """SFR's first prediction (``model.py:262-290``): cosine of the L2-normalised patch tokens with the
    prompts, bilinear to the window (``align_corners=False``), PAMR with the normalised window as guide,
    softmax(logit_scale ·) over the prompts.

    Args:
        tokens: (B, 1 + N, E) projected tokens (not normalised).
        text: (P, E) prompt classifier.
        window: (B, 3, H, W) the normalised window (its whole size, not only the encoded patches).

    Returns:
        (B, P, H, W) probabilities.
    """
    b = tokens.shape[0]
    h, w = grid_hw
    patches = tokens[:, 1:]
    patches = patches / patches.norm(dim=-1, keepdim=True)
    logits = (patches @ text.t()).reshape(b, h, w, -1).permute(0, 3, 1, 2)
    logits = F.interpolate(logits, size=tuple(window.shape[-2:]), mode="bilinear", align_corners=False)
    logits = pamr(window, logits, steps=pamr_steps, dilations=pamr_dilations)
    return torch.softmax(logits * logit_scale, dim=1)


def patch_labels(probs: Tensor, patch: int, grid_hw: tuple[int, int], temp_thd: float) -> Tensor:
    """Prompt label per patch (``model.py:106-126``): per-pixel argmax (first max), pixels whose max
    probability is below ``temp_thd`` -> prompt 0, then the most frequent label of each p × p block
    (``torch.mode``: the smallest label on ties); rows and columns beyond the grid are dropped.

    Args:
        probs: (B, P, H, W).

    Returns:
        (B, h, w) int64.
    """
    h, w = grid_hw
    top = probs.max(dim=1).values
    pred = probs.argmax(dim=1)
    pred[top < temp_thd] = 0
    blocks = pred[:, : h * patch, : w * patch].unfold(1, patch, patch).unfold(2, patch, patch)
    return torch.mode(blocks.reshape(pred.shape[0], h, w, -1), dim=-1).values


def connected_pairs(labels: Tensor) -> tuple[Tensor, Tensor, int]:
    """The release's ``check_path`` (``model.py:130-148``) over every ordered pair of patches.

    For patches i, j (row-major) at Chebyshev distance ``steps_ij``, the points
    ``round(p_i (1 - t_k) + p_j t_k)`` with ``t = linspace(0, 1, M + 1)`` and **M the largest distance over
    all pairs** are sampled for ``k <= steps_ij``; the pair is connected iff every sample has the label of
    i. Because ``t_k = k / M``, only the first ``steps_ij / M`` of the segment is checked (the whole of it
    only for pairs at distance M).

    Args:
        labels: (h, w) patch labels.

    Returns:
        connected (N, N) bool, steps (N, N) int64, M.
    """
    h, w = labels.shape
    idx = torch.arange(h * w, device=labels.device)
    coords = torch.stack((idx // w, idx % w), dim=-1)  # (N, 2) row, col
    start = coords[:, None, :].expand(-1, h * w, -1).reshape(-1, 2)
    end = coords[None, :, :].expand(h * w, -1, -1).reshape(-1, 2)
    steps = (end - start).abs().max(dim=1).values
    m = int(steps.max())
    t = torch.linspace(0, 1, steps=m + 1, device=labels.device).unsqueeze(1).unsqueeze(0)
    points = (start.unsqueeze(1) * (1 - t) + end.unsqueeze(1) * t).round().long()
    valid = torch.arange(m + 1, device=labels.device).unsqueeze(0) <= steps.unsqueeze(1)
    first = labels[start[:, 0], start[:, 1]].unsqueeze(1)
    ok = (labels[points[..., 0], points[..., 1]] == first) | ~valid
    n = h * w
    return ok.all(dim=1).view(n, n), steps.view(n, n), m


def blur_rows(matrix: Tensor, std: float) -> Tensor:
    """1-D Gaussian blur of every row over the flattened (row-major) patch index (``model.py:216-230``):
    ``min(N, int(6σ + 1))`` taps, made odd, weights ``exp(-x²/(2σ²))`` normalised, zero padding."""
    n = matrix.shape[-1]
    size = min(n, int(6 * std + 1))
    size = size if size % 2 == 1 else size + 1
    x = torch.arange(size, device=matrix.device) - size // 2
    kernel = torch.exp(-(x**2) / (2 * std**2))
    kernel = kernel / kernel.sum()
    return F.conv1d(matrix.unsqueeze(1), kernel.view(1, 1, -1), padding=size // 2).squeeze(1)


def sfr_matrix(labels: Tensor, std: float, delete_same_entity: bool) -> Tensor:
    """SFR's (1 + N, 1 + N) matrix of one window (``model.py:152-240``).

    Same-label mask over patch pairs (diagonal 1, [CLS] row and column 0); if ``delete_same_entity``,
    pairs not connected (:func:`connected_pairs`) are multiplied by ``exp(-steps / M)``; each row blurred
    (:func:`blur_rows`), ``relu``, divided by ``row sum + 1e-8``.

    Args:
        labels: (h, w) patch labels of one window.
    """
    h, w = labels.shape
    n = h * w
    flat = labels.reshape(-1)
    mask = (flat[:, None] == flat[None, :]).float()
    mask.diagonal().fill_(1)
    if delete_same_entity:
        connected, steps, m = connected_pairs(labels)
        mask = torch.where(connected, mask, mask * torch.exp(-steps / m))
    blurred = F.relu(blur_rows(mask, std))
    normalised = blurred / (blurred.sum(dim=1, keepdim=True) + 1e-8)
    out = torch.zeros(n + 1, n + 1, device=labels.device)
    out[1:, 1:] = normalised
    return out


def _window_of(ctx: MethodContext) -> Tensor:
    return ctx.images if ctx.window is None else ctx.window


@METHODS.register("ResCLIP")
class ResCLIP(DenseMethod):
    """ResCLIP: RCS (mean attention of middle blocks mixed into the last block's attention) and SFR (a first
    prediction's same-entity patch mask mixed into its logits); docs/methods.md "ResCLIP".

    The tower only embeds (``stop`` = block 0): blocks 0..D-2 run here with explicit attention, as in the
    release, whose maps RCS needs; the last block runs twice (first prediction, then with SFR).
    """

    Options = ResCLIPOptions

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """The base rule and arch are ``method.params.attention`` / ``arch``; the generic last-block fields
        must stay at their defaults, so a command line cannot set one that is silently ignored."""
        super().check_config(cfg)
        method_options(cls.Options, getattr(cfg, "params", {}) or {}, cls.__name__)
        generic = {
            "attention": getattr(cfg, "attention", "vanilla") != "vanilla",
            "keep_residual": not getattr(cfg, "keep_residual", True),
            "keep_ffn": not getattr(cfg, "keep_ffn", True),
            "attention_params": bool(getattr(cfg, "attention_params", None)),
        }
        for key, changed in generic.items():
            if changed:
                raise ValueError(
                    f"method.{key} is not read by method type ResCLIP: set method.params.attention / arch / "
                    "gaussian_std instead"
                )

    def rcs_indices(self, depth: int) -> list[int]:
        """0-based blocks RCS averages; each must lie before the last block."""
        out = []
        for index in self.options.rcs_blocks:
            i = index if index >= 0 else depth + index
            if not 0 <= i < depth - 1:
                raise ValueError(
                    f"rcs block {index} is not one of blocks 0..{depth - 2} of a {depth}-block tower"
                )
            out.append(i)
        return out

    def request(self, depth: int) -> TowerRequest:
        """Embedding only: every block runs in :meth:`features`."""
        return TowerRequest(stop=-depth)

    def features(self, tower: DenseEncoder, state: TowerState, ctx: MethodContext) -> DenseFeatures:
        """The release's ``VisionTransformer.forward`` on a batch of windows (module docstring)."""
        if ctx.text is None:
            raise ValueError("ResCLIP needs the text classifier (its first prediction is fed back)")
        o = self.options
        depth = tower.depth
        wanted = self.rcs_indices(depth)
        x, grid_hw = state.x, state.grid_hw
        maps: dict[int, Tensor] = {}
        for idx in range(depth - 1):
            x, attn = explicit_block(tower.block(idx), x)
            if idx in wanted:
                maps[idx] = attn
        rcs = rcs_map([maps[i] for i in wanted])
        first = self._last_block(tower, x, grid_hw, rcs)
        probs = first_prediction(
            tower.head(first, normalize=False),
            ctx.text.to(first.dtype),
            grid_hw,
            _window_of(ctx),
            logit_scale=o.sfr_logit_scale,
            pamr_steps=o.sfr_pamr_steps,
            pamr_dilations=o.sfr_pamr_dilations,
        )
        labels = patch_labels(probs, tower.patch_size[0], grid_hw, o.temp_thd)
        sfr = torch.stack([sfr_matrix(lab, o.gaussian_std, o.delete_same_entity) for lab in labels])[:, None]
        final = self._last_block(tower, x, grid_hw, rcs, sfr)
        return DenseFeatures(tokens=tower.head(final), grid_hw=grid_hw)

    def _last_block(
        self, tower: DenseEncoder, x: Tensor, grid_hw: tuple[int, int], rcs: Tensor, sfr: Tensor | None = None
    ) -> Tensor:
        """The last block with :func:`resclip_attention`; residual and FFN only with ``arch='w_resi'``."""
        o = self.options
        block = tower.block(-1)
        q, k, v = project_qkv(block.attn, block.ln_1(x))
        out = resclip_attention(
            q,
            k,
            v,
            attention=o.attention,
            grid_hw=grid_hw,
            gaussian_std=o.gaussian_std,
            rcs=rcs,
            rcs_weights=o.attn_rcs_weights,
            sfr=sfr,
            sfr_weights=o.attn_sfr_weights,
        )
        out = block.ls_1(_merge_heads(block.attn, out))
        if o.arch == "wo_resi":
            return out
        x = x + out
        return x + block.ls_2(block.mlp(block.ln_2(x)))
