"""Sliding-window placement, coverage and averaging."""

from __future__ import annotations

import pytest
import torch

from cliptrase.inference.sliding import sliding_window, window_boxes, window_starts


def test_window_starts_like_mmseg():
    assert window_starts(224, 224, 112) == [0]
    assert window_starts(336, 224, 112) == [0, 112]
    assert window_starts(337, 224, 112) == [0, 112, 113]
    assert window_starts(100, 224, 112) == [0]
    with pytest.raises(ValueError, match="uncovered"):
        window_starts(500, 100, 200)


def test_window_as_large_as_image_equals_whole():
    x = torch.randn(2, 3, 224, 224)

    def fn(c):
        return c.mean(1, keepdim=True) * 2

    torch.testing.assert_close(sliding_window(fn, x, crop=224, stride=112), fn(x))


@pytest.mark.parametrize(("h", "w"), [(337, 501), (100, 150), (224, 449)])
@pytest.mark.parametrize("max_batch", [1, 5, 64])
def test_odd_sizes_overlap_normalisation(h, w, max_batch):
    x = torch.randn(2, 3, h, w)

    def fn(c):
        return c[:, :2] * 3  # position-independent: averaging overlapping windows returns it unchanged

    out = sliding_window(fn, x, crop=224, stride=112, max_batch=max_batch)
    torch.testing.assert_close(out, x[:, :2] * 3)
    boxes = window_boxes((h, w), (224, 224), (112, 112))
    cover = torch.zeros(h, w)
    for y1, y2, x1, x2 in boxes:
        assert y2 - y1 == min(224, h) and x2 - x1 == min(224, w)
        cover[y1:y2, x1:x2] += 1
    assert (cover > 0).all()


def test_window_position_dependent_average():
    """Each pixel gets the mean over the windows covering it."""
    x = torch.zeros(1, 1, 5, 7)
    calls = []

    def fn(c):
        calls.append(c.shape[0])
        return torch.arange(1, c.shape[0] + 1, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 3, 3)

    out = sliding_window(fn, x, crop=3, stride=2, max_batch=100)
    boxes = window_boxes((5, 7), (3, 3), (2, 2))
    total, count = torch.zeros(5, 7), torch.zeros(5, 7)
    for k, (y1, y2, x1, x2) in enumerate(boxes):
        total[y1:y2, x1:x2] += k + 1
        count[y1:y2, x1:x2] += 1
    torch.testing.assert_close(out[0, 0], total / count)
    assert calls == [len(boxes)]


def test_list_of_sizes_batched_together():
    """Windows of differently sized images go through fn together and equal per-image sliding."""
    from cliptrase.inference.sliding import sliding_window_list

    images = [torch.randn(3, 337, 501), torch.randn(3, 224, 300), torch.randn(3, 100, 150)]
    batches = []

    def fn(c):
        batches.append(c.shape[0])
        return torch.cat([c.mean(1, keepdim=True), c[:, :1] ** 2], 1)

    outs = sliding_window_list(fn, images, crop=224, stride=112, max_batch=8)
    for img, out in zip(images, outs):
        torch.testing.assert_close(out, sliding_window(fn, img[None], crop=224, stride=112)[0])
    assert batches[0] == 8  # windows of the first two images share batches
