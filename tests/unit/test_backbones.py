"""Random-weight towers shaped like ViT-B/16, ViT-L/14 and ViT-H/14 run the whole method (shape test).

Block indices are relative to depth: the correlation comes from block d-1 and the modified attention
sits in block d, whatever d is (12, 24, 32). No download: open_clip builds the architectures from its
configs with random weights.
"""

from __future__ import annotations

import pytest
import torch

from cliptrase.method.runner import Predictor
from cliptrase.method.trase import CLIPtraseOptions
from cliptrase.models.clip import RANDOM, load_clip
from cliptrase.models.text import build_text_classifier


@pytest.mark.parametrize(
    ("name", "depth", "width", "patch"),
    [("ViT-B-16", 12, 768, 16), ("ViT-L-14", 24, 1024, 14), ("ViT-H-14", 32, 1280, 14)],
)
def test_backbone_end_to_end(name, depth, width, patch):
    torch.manual_seed(0)
    clip = load_clip(name, RANDOM)
    pred = Predictor(clip)
    enc = pred.encoder
    assert (enc.depth, enc.width, enc.patch_size) == (depth, width, (patch, patch))
    assert enc.block_index(-2) == depth - 2 and enc.block_index(-1) == depth - 1
    side = 16 * patch  # a 16 x 16 grid, different from the stored one: exercises the positional resize
    x = torch.randn(1, 3, side, side)
    # One template keeps the (large) text towers cheap; the classifier itself is tested elsewhere.
    text = build_text_classifier(clip.model, clip.tokenizer, ["sky", "road", "car"], ["a photo of a {}."])
    out = pred(x, text, CLIPtraseOptions(eps=0.7, min_samples=3))
    n = 16 * 16
    assert out.corr.shape == (1, n + 1, n + 1)
    assert out.dbscan_in.shape == (1, n, n) and out.labels.shape == (1, n)
    assert out.pred.shape == (1, side, side) and int(out.pred.max()) < 3
    del clip, pred
