"""Inputs of any size: the floored patch grid (SCLIP, NACLIP) and window padding (ClearCLIP 16, ProxyCLIP 56),
in sliding windows and on whole images (NACLIP's VOC protocol on odd-sized images)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.config import compose_eval

from cliptrase.config import ProtocolConfig, validate
from cliptrase.inference.sliding import fit_to_patches


def test_floor_cuts_to_whole_patches_and_stretches_back():
    x = torch.randn(2, 3, 336, 505)
    fitted, out_hw, box = fit_to_patches(x, 16, 0)
    assert fitted.shape[-2:] == (336, 496) and out_hw == (336, 505) and box is None
    assert torch.equal(fitted, x[..., :336, :496])


@pytest.mark.parametrize(
    ("hw", "multiple", "padded", "encoded", "box"),
    [
        # ClearCLIP compute_padsize(H, W, 16): 100 -> +12 (6 top, 6 bottom), 150 -> +10 (5 left, 5 right)
        ((100, 150), 16, (112, 160), (112, 160), (6, 106, 5, 155)),
        # ProxyCLIP compute_padsize(H, W, 56): 300 -> +36 (18 / 18), 201 -> +23 (11 left, 12 right)
        ((300, 201), 56, (336, 224), (336, 224), (18, 318, 11, 212)),
        # 56-multiples that are not 16-multiples: the CLIP grid is then floored (280 -> 17 patches)
        ((250, 336), 56, (280, 336), (272, 336), (15, 265, 0, 336)),
    ],
)
def test_pad_like_the_peers(hw, multiple, padded, encoded, box):
    x = torch.randn(1, 3, *hw)
    fitted, out_hw, got = fit_to_patches(x, 16, multiple)
    assert out_hw == padded and tuple(fitted.shape[-2:]) == encoded and got == box
    full = torch.nn.functional.pad(x, (box[2], padded[1] - box[3], box[0], padded[0] - box[1]))
    assert torch.equal(fitted, full[..., : encoded[0], : encoded[1]])


def test_fitting_windows_are_untouched():
    x = torch.randn(1, 3, 448, 448)
    fitted, out_hw, box = fit_to_patches(x, 16, 16)
    assert torch.equal(fitted, x) and out_hw == (448, 448) and box is None


def _protocol(name: str) -> ProtocolConfig:
    cfg = compose_eval([f"protocol={name}", "dataset=voc21", "paths.results_dir=/unused"])
    return validate(cfg)["protocol"]


def _segmentor(tiny_arch: str, protocol: str, dataset: str):
    pytest.importorskip("mmseg")
    from cliptrase.engine.segmentor import CLIPtraseSegmentor

    torch.manual_seed(0)
    return CLIPtraseSegmentor(
        model={"name": tiny_arch, "pretrained": "random"},
        method={"name": "naclip", "attention": "naclip", "keep_residual": False, "keep_ffn": False},
        protocol=_protocol(protocol),
        prompts=["background", "cat", "dog", "person"],
        prompt_to_class=[0, 1, 2, 3],
        n_classes=4,
        dataset_name=dataset,
        device="cpu",
    )


@pytest.mark.parametrize(
    ("resized", "ori"), [((336, 505), (333, 500)), ((449, 336), (500, 375)), ((337, 341), (337, 341))]
)
def test_naclip_whole_image_voc_on_odd_sizes(tiny_arch, resized, ori):
    seg = _segmentor(tiny_arch, "naclip", "voc21")
    assert seg.settings.crop == 0 and seg.settings.pamr_steps == 10
    image = torch.randn(3, *resized)
    labels = seg._predict_standard([image], [ori])[0]
    assert tuple(labels.shape) == ori
    # NACLIP naclip.py:64-68: grid floored to whole patches, logits stretched back over the image
    h, w = (resized[0] // 16) * 16, (resized[1] // 16) * 16
    feats = seg.predictor.encode(image[None, :, :h, :w])
    assert feats.grid_hw == (h // 16, w // 16)
    stretched = seg.predictor.segment(feats, seg.text, seg.options, resized).logits
    assert torch.allclose(seg.window_scores(image[None]), stretched / seg.predictor.logit_scale)


def test_clearclip_pads_small_windows(tiny_arch):
    seg = _segmentor(tiny_arch, "clearclip", "voc21")
    window = torch.randn(1, 3, 100, 150)
    padded = F.pad(window, (5, 5, 6, 6))
    out = seg.predictor.segment(seg.predictor.encode(padded), seg.text, seg.options, (112, 160)).logits[
        ..., 6:106, 5:155
    ]
    assert torch.allclose(seg.window_scores(window), out / seg.predictor.logit_scale)
    assert tuple(seg._predict_standard([window[0]], [(100, 150)])[0].shape) == (100, 150)
