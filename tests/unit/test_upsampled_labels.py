"""The chunked full-resolution scorer against the path it replaces: the whole (P, H, W) bilinear
upsampling followed by :func:`scores_to_labels` (docs/protocols.md §1c, steps 3-6)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cliptrase.inference.scoring import _prompt_chunks, scores_to_labels, upsampled_labels


def reference(scores, size, prompt_to_class, n_classes, logit_scale, prob_thd, area_thd):
    """The untiled path: every prompt map at full size, then the peers' rule."""
    full = F.interpolate(scores.contiguous()[None], size=size, mode="bilinear", align_corners=False)[0]
    return scores_to_labels(full, prompt_to_class, n_classes, logit_scale, prob_thd, area_thd=area_thd)


def random_case(seed, n_prompts, n_classes, hw, *, quantised=False, channels_last=False):
    """Scores like averaged window cosines; synonyms (several prompts per class) in shuffled order."""
    gen = torch.Generator().manual_seed(seed)
    prompt_to_class = torch.cat(
        [torch.arange(n_classes), torch.randint(0, n_classes, (n_prompts - n_classes,), generator=gen)]
    )[torch.randperm(n_prompts, generator=gen)]
    scores = 0.2 + 0.04 * torch.randn(n_prompts, *hw, generator=gen)
    if quantised:  # few distinct values: exact ties between prompts and classes everywhere
        scores = (scores * 16).round() / 16
    if channels_last:  # the layout sliding_window_list returns
        scores = scores.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    return scores, prompt_to_class


CASES = [
    # (n_prompts, n_classes, window-resolution hw, output size, chunk_pixels)
    (11, 6, (13, 17), (37, 53), 5 * 37 * 53),  # chunks of 5, the last one 1 prompt
    (23, 9, (20, 31), (41, 29), 7 * 41 * 29),  # odd sizes, up in one axis and down in the other
    (40, 40, (15, 15), (64, 47), 4 * 64 * 47),  # no synonyms, many chunks
    (9, 3, (8, 12), (8, 12), 1),  # same size; the minimum chunk (4 prompts)
    (30, 12, (17, 23), (50, 70), 1 << 30),  # one chunk: logsumexp over all prompts at once
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("prob_thd", [0.0, 0.3])
@pytest.mark.parametrize("area_thd", [None, 0.2])
@pytest.mark.parametrize("quantised", [False, True])
def test_equals_untiled_path(case, prob_thd, area_thd, quantised):
    n_prompts, n_classes, hw, size, chunk_pixels = case
    scores, p2c = random_case(len(CASES) + n_prompts, n_prompts, n_classes, hw, quantised=quantised)
    ref = reference(scores, size, p2c, n_classes, 40.0, prob_thd, area_thd)
    out = upsampled_labels(scores, size, p2c, n_classes, 40.0, prob_thd, area_thd, chunk_pixels=chunk_pixels)
    assert out.dtype == ref.dtype == torch.int64 and out.shape == size
    assert torch.equal(out, ref)


def test_thresholds_are_exercised():
    """The cases above reach both sides of prob_thd and suppress classes under area_thd."""
    n_prompts, n_classes, hw, size, chunk = CASES[1]
    scores, p2c = random_case(0, n_prompts, n_classes, hw)
    plain = upsampled_labels(scores, size, p2c, n_classes, 40.0, 0.0, None, chunk_pixels=chunk)
    thd = upsampled_labels(scores, size, p2c, n_classes, 40.0, 0.3, None, chunk_pixels=chunk)
    area = upsampled_labels(scores, size, p2c, n_classes, 40.0, 0.0, 0.3, chunk_pixels=chunk)
    assert 0 < int((thd != plain).sum()) < plain.numel()
    assert len(area.unique()) < len(plain.unique())


def test_layout_and_vocabulary_edge_cases():
    # channels-last input (the sliding-window canvas), a class without prompts, background words only in
    # class 0, and a background-only image under the area rule
    scores, p2c = random_case(3, 14, 5, (19, 21), channels_last=True)
    p2c = torch.where(p2c == 3, torch.tensor(0), p2c)  # class 3 loses its prompts: never predicted
    for prob_thd, area_thd in ((0.0, None), (0.1, 0.1)):
        ref = reference(scores, (33, 40), p2c, 5, 40.0, prob_thd, area_thd)
        out = upsampled_labels(scores, (33, 40), p2c, 5, 40.0, prob_thd, area_thd, chunk_pixels=4 * 33 * 40)
        assert torch.equal(out, ref) and not bool((out == 3).any())
    background = scores.clone()
    background[p2c == 0] += 1.0
    ref = reference(background, (33, 40), p2c, 5, 40.0, 0.1, 0.1)
    assert torch.equal(upsampled_labels(background, (33, 40), p2c, 5, 40.0, 0.1, 0.1, chunk_pixels=1), ref)
    assert bool((ref == 0).all())


def test_chunked_upsampling_is_bit_identical():
    """Each chunk's F.interpolate gives the same bits as the same prompts of the whole upsampling."""
    scores, _ = random_case(5, 19, 19, (23, 29))
    size = (61, 83)  # H + W > SMALL_OUTPUT: chunked (smaller outputs are upsampled in one call)
    full = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
    for start, stop in _prompt_chunks(19, 5):
        part = F.interpolate(scores[None, start:stop], size=size, mode="bilinear", align_corners=False)[0]
        assert torch.equal(part, full[start:stop])


@pytest.mark.parametrize("n_prompts", range(1, 30))
def test_prompt_chunks_cover_in_order_and_never_hold_three(n_prompts):
    for per_chunk in (0, 1, 4, 5, 7, 100):
        chunks = _prompt_chunks(n_prompts, per_chunk)
        assert [i for a, b in chunks for i in range(a, b)] == list(range(n_prompts))
        assert all(b - a != 3 for a, b in chunks) or chunks == [(0, 3)]
        assert all(b - a >= 4 for a, b in chunks[:-1])
