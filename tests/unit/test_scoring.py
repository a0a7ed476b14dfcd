"""The standard protocol's scores -> labels step against the peers' rule written out."""

from __future__ import annotations

import pytest
import torch

from cliptrase.inference.scoring import scores_to_labels


def peers_rule(scores, prompt_to_class, n_classes, logit_scale, prob_thd):
    """softmax over prompts, max over each class's prompts, argmax, threshold (docs/protocols.md §1)."""
    probs = torch.softmax(logit_scale * scores, dim=0)
    class_probs = torch.stack([probs[prompt_to_class == c].amax(0) for c in range(n_classes)])
    best, labels = class_probs.max(dim=0)
    labels[best < prob_thd] = 0
    return labels


@pytest.mark.parametrize("prob_thd", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_scores_to_labels_equals_peers_rule(prob_thd, layout):
    gen = torch.Generator().manual_seed(0)
    n_classes, h, w = 6, 31, 47
    prompt_to_class = torch.tensor([0, 1, 2, 3, 4, 5, 0, 0, 3, 5, 5])  # synonyms / background words
    scores = 0.05 * torch.randn(len(prompt_to_class), h, w, generator=gen) + 0.2
    if layout == "channels_last":
        scores = scores.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    ref = peers_rule(scores, prompt_to_class, n_classes, 40.0, prob_thd)
    out = scores_to_labels(scores, prompt_to_class, n_classes, 40.0, prob_thd)
    assert torch.equal(out, ref)
    if prob_thd:
        assert 0 < int((ref == 0).sum()) < h * w  # the threshold is exercised on both sides
