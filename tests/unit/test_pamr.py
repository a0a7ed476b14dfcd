"""PAMR post-processing: shapes, identity at 0 steps, uniform smoothing on a flat image, distributions."""

from __future__ import annotations

import pytest
import torch

from cliptrase.method.pamr import pamr, pamr_affinity


def _masks(b: int = 2, c: int = 4, h: int = 20, w: int = 27, seed: int = 0) -> torch.Tensor:
    return torch.softmax(3 * torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed)), dim=1)


def _image(b: int = 2, h: int = 20, w: int = 27, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_shape_and_dtype():
    masks = _masks()
    out = pamr(_image(), masks)
    assert out.shape == masks.shape and out.dtype == masks.dtype
    half = pamr(_image(), masks.half(), steps=2)
    assert half.dtype == torch.float16


def test_zero_steps_is_identity():
    masks = _masks()
    assert torch.equal(pamr(_image(), masks, steps=0), masks)


def test_inputs_not_modified():
    image, masks = _image(), _masks()
    image0, masks0 = image.clone(), masks.clone()
    pamr(image, masks, steps=3)
    assert torch.equal(image, image0) and torch.equal(masks, masks0)


def test_flat_image_gives_uniform_neighbour_average():
    """σ = 0 everywhere: every affinity is 1/P and one step averages the 16 (clamped) neighbours."""
    b, c, h, w = 1, 2, 9, 11
    masks = _masks(b, c, h, w)
    image = torch.full((b, 3, h, w), 0.3)
    alpha, offsets = pamr_affinity(image, (1, 2))
    assert len(offsets) == 16
    torch.testing.assert_close(alpha, torch.full_like(alpha, 1 / 16))
    out = pamr(image, masks, steps=1, dilations=(1, 2))
    expected = torch.zeros_like(masks)
    for y in range(h):
        for x in range(w):
            for d in (1, 2):
                for dy in (-d, 0, d):
                    for dx in (-d, 0, d):
                        if (dy, dx) == (0, 0):
                            continue
                        yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                        expected[..., y, x] += masks[..., yy, xx] / 16
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_flat_image_smooths_and_keeps_constants():
    masks = _masks(1, 3, 24, 24)
    image = torch.zeros(1, 3, 24, 24)
    out = pamr(image, masks, steps=10, dilations=(1, 2))
    assert out.var(dim=(-2, -1)).max() < masks.var(dim=(-2, -1)).min()
    const = torch.full((1, 3, 24, 24), 0.25)
    torch.testing.assert_close(pamr(image, const, steps=10, dilations=(1, 2)), const)


def test_distribution_stays_a_distribution():
    masks = _masks()
    out = pamr(_image(), masks, steps=10, dilations=(8, 16))
    assert out.min() >= 0
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2, 20, 27), atol=1e-5, rtol=0)


def test_edges_stop_propagation():
    """Two flat colour halves: a mask confined to the left half stays (mostly) on the left."""
    h, w = 16, 16
    image = torch.zeros(1, 3, h, w)
    image[..., w // 2 :] = 1.0
    image += 0.01 * torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 1, h, w)
    mask[..., : w // 2] = 1.0
    out = pamr(image, mask, steps=10, dilations=(1, 2))
    flat = pamr(torch.zeros_like(image), mask, steps=10, dilations=(1, 2))
    assert out[..., w // 2 :].max() < 0.05 < flat[..., w // 2 :].max()


def test_bad_input():
    with pytest.raises(ValueError, match="spatial"):
        pamr(_image(h=10), _masks(h=12))
    with pytest.raises(ValueError, match="steps"):
        pamr(_image(), _masks(), steps=-1)
    with pytest.raises(ValueError, match="dilations"):
        pamr(_image(), _masks(), dilations=(0,))
