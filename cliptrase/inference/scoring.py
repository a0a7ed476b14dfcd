"""Prompt scores to labels, the standard protocol's last step (protocols.md §1).

The peers' rule (SCLIP / ClearCLIP / NACLIP) at the GT resolution is::

    probs = softmax(logit_scale * scores over prompts)
    class_probs[c] = max(probs[p] for the prompts p of class c)        # synonyms, background words
    labels = argmax_c class_probs;  labels[max_c class_probs < prob_thd] = 0

Softmax shares one normaliser per pixel and is monotone, so the argmax is taken on the raw scores and the
P x H x W softmax is never materialised; when a threshold is set, only the winner's probability is formed,
``exp(s * best - logsumexp(s * scores))``. The labels equal the written-out rule except where two prompts'
probabilities round to the same float while their scores differ (the raw scores then decide).
"""

from __future__ import annotations

import torch
from torch import Tensor


def scores_to_labels(
    scores: Tensor, prompt_to_class: Tensor, n_classes: int, logit_scale: float, prob_thd: float = 0.0
) -> Tensor:
    """Labels from per-prompt scores.

    Args:
        scores: (P, H, W) cosine scores at the output resolution (prompt-major is fastest on CPU).
        prompt_to_class: (P,) class of every prompt.
        n_classes: number of classes C.
        logit_scale: softmax temperature (40 in the peers' protocol).
        prob_thd: pixels whose winning class probability is below this get label 0 (0 disables).

    Returns:
        (H, W) int64 labels.
    """
    class_scores = scores.new_full((n_classes, *scores.shape[1:]), -torch.inf)
    index = prompt_to_class.view(-1, 1, 1).expand_as(scores)  # a view: no P x H x W index tensor
    class_scores.scatter_reduce_(0, index, scores, "amax")
    best, labels = class_scores.max(dim=0)
    if prob_thd:
        log_norm = torch.logsumexp(logit_scale * scores, dim=0)
        labels[torch.exp(logit_scale * best - log_norm) < prob_thd] = 0
    return labels
