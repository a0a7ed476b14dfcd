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

import torch
from torch import Tensor


def suppress_small_classes(class_scores: Tensor, area_thd: float) -> Tensor:
    """SCLIP's area rule on (C, H, W) class scores, class 0 the background: returns a copy in which every
    foreground class whose argmax area is at most ``area_thd`` times the total foreground argmax area
    scores ``-inf`` (probability 0), so its pixels take their next best class."""
    labels = class_scores.argmax(dim=0)
    area = torch.bincount(labels.flatten(), minlength=class_scores.shape[0])[1:]
    small = area <= area_thd * area.sum()
    out = class_scores.clone()
    out[1:][small] = -torch.inf
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
