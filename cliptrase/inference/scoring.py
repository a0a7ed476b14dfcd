"""Prompt scores to labels, the standard protocol's last step (docs/protocols.md §1).

The peers' rule (SCLIP / ClearCLIP / NACLIP) at the GT resolution is::

    probs = softmax(logit_scale * scores over prompts)
    class_probs[c] = max(probs[p] for the prompts p of class c)        # synonyms, background words
    [area_thd, SCLIP only: class_probs[c] = 0 for every foreground class c whose argmax area is
     <= area_thd * (argmax area of all foreground classes)]
    labels = argmax_c class_probs;  labels[max_c class_probs < prob_thd] = 0

The area rule is SCLIP's ``postprocess_result`` (``wangf3014/SCLIP:clip_segmentor.py:162-167``, on with
``area_thd=0.1`` in ``configs/cfg_voc21.py:8``): a suppressed class keeps the softmax normaliser, so its
pixels go to the next most probable class (often the background) and then face ``prob_thd``.

Softmax shares one normaliser per pixel and is monotone, so the argmax is taken on the raw scores and the
P x H x W softmax is never materialised; when a threshold is set, only the winner's probability is formed,
``exp(s * best - logsumexp(s * scores))``. The labels equal the written-out rule except where two prompts'
probabilities round to the same float while their scores differ (the raw scores then decide).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

from cliptrase.inference.window_scores import StitchedScores, prompt_maps
from cliptrase.utils.bilinear import SMALL_OUTPUT


def small_classes(labels: Tensor, n_classes: int, area_thd: float) -> Tensor:
    """SCLIP's area rule: (C,) bool, True for every foreground class (class 0 is the background) whose area in
    ``labels`` is at most ``area_thd`` times the total foreground area."""
    area = torch.bincount(labels.flatten().long(), minlength=n_classes)[1:n_classes]
    background = torch.zeros(1, dtype=torch.bool, device=area.device)
    return torch.cat([background, area <= area_thd * area.sum()])


def suppress_small_classes(class_scores: Tensor, area_thd: float) -> Tensor:
    """:func:`small_classes` on (C, H, W) class scores: returns a copy in which every small class scores
    ``-inf`` (probability 0), so its pixels take their next best class."""
    out = class_scores.clone()
    out[small_classes(class_scores.argmax(dim=0), class_scores.shape[0], area_thd)] = -torch.inf
    return out


def scores_to_labels(
    scores: Tensor,
    prompt_to_class: Tensor,
    n_classes: int,
    logit_scale: float,
    prob_thd: float = 0.0,
    area_thd: float | None = None,
) -> Tensor:
    """Labels from per-prompt scores.

    Args:
        scores: (P, H, W) cosine scores at the output resolution (prompt-major is fastest on CPU).
        prompt_to_class: (P,) class of every prompt.
        n_classes: number of classes C.
        logit_scale: softmax temperature (40 in the peers' protocol).
        prob_thd: pixels whose winning class probability is below this get label 0 (0 disables).
        area_thd: SCLIP's small-segment suppression (:func:`suppress_small_classes`); None disables.

    Returns:
        (H, W) int64 labels.
    """
    class_scores = scores.new_full((n_classes, *scores.shape[1:]), -torch.inf)
    index = prompt_to_class.view(-1, 1, 1).expand_as(scores)  # a view: no P x H x W index tensor
    class_scores.scatter_reduce_(0, index, scores, "amax")
    if area_thd is not None:
        class_scores = suppress_small_classes(class_scores, area_thd)
    best, labels = class_scores.max(dim=0)
    if prob_thd:
        log_norm = torch.logsumexp(logit_scale * scores, dim=0)
        labels[torch.exp(logit_scale * best - log_norm) < prob_thd] = 0
    return labels


CHUNK_PIXELS = 1 << 22
"""Full-resolution prompt values :func:`upsampled_labels` holds at once (4 Mi, 16 MiB in fp32), whatever
the vocabulary size."""


def _prompt_chunks(n_prompts: int, per_chunk: int) -> list[tuple[int, int]]:
    """[start, stop) of consecutive chunks of ``per_chunk`` (at least 4) prompts.

    No chunk holds exactly 3 prompts (unless there are only 3): on one thread PyTorch's CPU bilinear kernel
    takes its channel-vectorised path for 3-channel inputs, whose last bits differ from the path of the
    whole tensor.
    """
    per_chunk = max(per_chunk, 4)
    bounds = [*range(0, n_prompts, per_chunk), n_prompts]
    chunks = list(itertools.pairwise(bounds))
    if len(chunks) > 1 and chunks[-1][1] - chunks[-1][0] == 3:
        chunks[-2:] = [(chunks[-2][0], n_prompts)]
    return chunks


class _Winner:
    """Per-pixel running result over prompt chunks: best score, its class (the smallest class among
    equal best scores, as ``argmax`` over class scores) and the logsumexp of ``logit_scale`` x scores.

    The class is found without an index reduction (slow over the prompt axis on CPU): with the top score
    ``t`` of a pixel, ``t - s`` is +0.0 exactly for the prompts that reach it and > 0 for the others, so
    its int32 bit pattern, negated, is 0 for them and negative for the others; OR-ed with the rank of the
    prompt's class (``n_classes - class``, >= 1) and max-reduced, it gives the largest rank, i.e. the
    smallest class, among the prompts reaching ``t``.
    """

    def __init__(self, prompt_class: Tensor, n_classes: int, logit_scale: float, with_norm: bool) -> None:
        self.rank = (n_classes - prompt_class).to(torch.int32).view(-1, 1, 1)
        self.n_classes, self.logit_scale, self.with_norm = n_classes, logit_scale, with_norm
        self.best = self.rank_at_best = self.shift = self.total = None
        self._scratch: Tensor | None = None

    def add(self, up: Tensor, start: int) -> None:
        """Fold in the upsampled maps ``up`` (k, H, W) of prompts ``start .. start + k - 1`` (overwritten)."""
        chunk_best = up.amax(dim=0)
        if self.with_norm:  # as torch.logsumexp: exp(x - max x) summed, here per chunk, merged online
            if self._scratch is None or self._scratch.shape != up.shape:
                self._scratch = torch.empty_like(up)
            shift = self.logit_scale * chunk_best
            x = torch.mul(up, self.logit_scale, out=self._scratch)
            total = x.sub_(shift).exp_().sum(dim=0)
            if self.shift is not None:
                new_shift = torch.maximum(self.shift, shift)
                total = total.mul_((shift - new_shift).exp_()).add_(
                    self.total.mul_((self.shift - new_shift).exp_())
                )
                shift = new_shift
            self.shift, self.total = shift, total
        top = chunk_best if self.best is None else torch.maximum(chunk_best, self.best)
        top = top + 0.0  # -0.0 -> +0.0, so that top - s is +0.0 wherever s == top
        gap = torch.sub(top, up, out=up).view(torch.int32)
        rank = self.rank[start : start + up.shape[0]].to(up.device)
        rank_at_top = gap.neg_().bitwise_or_(rank).amax(dim=0)
        if self.best is not None:  # the earlier chunks' class where it reaches the top too
            rank_at_top = torch.where(
                self.best == top, torch.maximum(rank_at_top, self.rank_at_best), rank_at_top
            )
        self.best, self.rank_at_best = top, rank_at_top

    @property
    def label(self) -> Tensor:
        """(H, W) int64 class of the best score (0 where every score is -inf, as ``argmax``)."""
        rank = self.rank_at_best.long()
        return torch.where(rank > 0, self.n_classes - rank, 0)

    def log_norm(self) -> Tensor:
        """logsumexp over all prompts folded in (``with_norm``)."""
        return self.total.log().add_(self.shift.masked_fill(self.shift.abs() == torch.inf, 0))


def _fold_prompts(
    scores: StitchedScores,
    prompt_class: Tensor,
    n_classes: int,
    size: tuple[int, int],
    logit_scale: float,
    chunk_pixels: int,
    with_norm: bool,
    drop: Tensor | None = None,
) -> _Winner:
    """Upsample ``scores`` (P, h, w) to ``size`` a chunk of prompts at a time into a :class:`_Winner`;
    the prompts flagged in ``drop`` (P,) score ``-inf`` (they are upsampled all the same: the calls, and
    so the bits of the other prompts, stay those of the first pass)."""
    n_prompts = scores.shape[0]
    small = size[0] + size[1] <= SMALL_OUTPUT
    per_chunk = n_prompts if small else chunk_pixels // max(size[0] * size[1], 1)
    winner = _Winner(prompt_class, n_classes, logit_scale, with_norm)
    for start, stop in _prompt_chunks(n_prompts, per_chunk):
        # prompt-major (NCHW-contiguous) per chunk, as the untiled path's copy of the whole tensor: the same
        # kernel, and no vocabulary-sized copy (the sliding-window canvas is pixel-major)
        chunk = prompt_maps(scores, start, stop)[None]
        up = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False)[0]
        if drop is not None:
            up[drop[start:stop]] = -torch.inf
        winner.add(up, start)
    return winner


def upsampled_labels(
    scores: StitchedScores,
    size: tuple[int, int],
    prompt_to_class: Tensor,
    n_classes: int,
    logit_scale: float,
    prob_thd: float = 0.0,
    area_thd: float | None = None,
    *,
    chunk_pixels: int = CHUNK_PIXELS,
) -> Tensor:
    """:func:`scores_to_labels` of the bilinear upsampling of ``scores`` to ``size``, never holding all P
    prompt maps at full size.

    Prompts are upsampled a chunk at a time (``chunk_pixels`` full-resolution values, at least 4 prompts)
    by the same ``F.interpolate`` call as the whole tensor takes, so every upsampled value is
    bit-identical to the untiled path; of each chunk only per-pixel results are kept (:class:`_Winner`:
    best score, its class, the running logsumexp that ``prob_thd`` needs). The area rule needs the labels
    of the whole image first; a second pass over the prompts of the classes it keeps recomputes best score
    and label. Memory is O(chunk + H x W), independent of the vocabulary size.

    The labels equal :func:`scores_to_labels` of the full upsampling, ties included, except where the best
    class's probability lies within a few ulps of ``prob_thd``: the logsumexp is accumulated chunk by chunk
    (rescaled when a chunk raises the running maximum), so its last bits can differ from one
    ``torch.logsumexp`` over all prompts.

    Region rows (:class:`~cliptrase.inference.window_scores.RegionScores`, CLIPtrase's voted windows) have
    their chunks formed from the rows; on the CPU :func:`~cliptrase.inference.region_labels.region_labels`
    gives the same labels without any prompt map
    (:func:`~cliptrase.inference.region_labels.stitched_labels` picks the path).

    Args:
        scores: (P, h, w) cosine scores, any layout (each chunk is copied prompt-major at this resolution),
            or kept as region rows (:mod:`cliptrase.inference.window_scores`).
        size: (H, W) output size.
        prompt_to_class, n_classes, logit_scale, prob_thd, area_thd: as :func:`scores_to_labels`.
        chunk_pixels: full-resolution values held per chunk.

    Returns:
        (H, W) int64 labels.
    """
    size = (int(size[0]), int(size[1]))
    prompt_to_class = prompt_to_class.cpu()
    winner = _fold_prompts(
        scores, prompt_to_class, n_classes, size, logit_scale, chunk_pixels, with_norm=bool(prob_thd)
    )
    best, labels = winner.best, winner.label
    if area_thd is not None:
        small = small_classes(labels, n_classes, area_thd).cpu()
        if bool(small.any()):
            drop = small[prompt_to_class]
            kept = _fold_prompts(
                scores,
                prompt_to_class,
                n_classes,
                size,
                logit_scale,
                chunk_pixels,
                False,
                drop.to(scores.device),
            )
            best, labels = kept.best, kept.label
    if prob_thd:
        labels[torch.exp(logit_scale * best - winner.log_norm()) < prob_thd] = 0
    return labels
