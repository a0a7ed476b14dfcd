"""Model loading, the dense forward and the text classifier."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cliptrase.models import text as text_mod
from cliptrase.models.attention import ATTENTION
from cliptrase.models.clip import load_clip
from cliptrase.models.dense import DenseEncoder, LastBlockSpec, resample_pos_embed
from cliptrase.models.text import build_text_classifier, cached_text_classifier, load_templates


@pytest.mark.parametrize("which", ["tiny_clip", "golden_clip"])
def test_vanilla_dense_equals_encode_image(which, request):
    clip = request.getfixturevalue(which)
    enc = DenseEncoder(clip.model.visual)
    size = clip.model.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = clip.model.encode_image(x)
        ours = enc(x, LastBlockSpec(), normalize=False).cls
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_variants_leave_model_unchanged(tiny_clip, images):
    model = tiny_clip.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = images[:, :, :64, :64]
    with torch.no_grad():
        ref = model.encode_image(x)
        enc = DenseEncoder(model.visual)
        for name in ATTENTION.names():
            enc(x, LastBlockSpec(attention=name), collect=(-2, -3))
        after = model.encode_image(x)
    torch.testing.assert_close(after, ref, atol=0, rtol=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_collected_qkv_match_block_input(tiny_clip, images):
    """q/k/v of a collected block are the in_proj of ln_1 of that block's input."""
    visual = tiny_clip.model.visual
    enc = DenseEncoder(visual)
    with torch.no_grad():
        feats = enc(images, LastBlockSpec(), collect=(-2,))
        x, _ = enc.embed(images)
        for blk in visual.transformer.resblocks[:-2]:
            x = blk(x)
        blk = visual.transformer.resblocks[-2]
        qkv = F.linear(blk.ln_1(x), blk.attn.in_proj_weight, blk.attn.in_proj_bias)
    q = feats.qkv[-2][0]
    heads, hd = q.shape[1], q.shape[3]
    assert heads == 3
    ref_q = qkv[..., :96].reshape(2, -1, heads, hd).transpose(1, 2)
    torch.testing.assert_close(q, ref_q, atol=1e-6, rtol=0)
    assert feats.tokens.shape == (2, 1 + 4 * 6, 32)
    assert feats.grid_hw == (4, 6)
    torch.testing.assert_close(feats.tokens.norm(dim=-1), torch.ones(2, 25), atol=1e-5, rtol=0)


def test_block_index_relative_and_checked(tiny_clip):
    enc = DenseEncoder(tiny_clip.model.visual)
    assert enc.block_index(-1) == 3
    assert enc.block_index(-2) == 2
    with pytest.raises(ValueError, match="outside a 4-block tower"):
        enc.block_index(-5)


def test_pos_embed_paper_offset():
    pos = torch.randn(1 + 14 * 14, 8, generator=torch.Generator().manual_seed(0))
    assert resample_pos_embed(pos, (14, 14)) is pos
    paper = resample_pos_embed(pos, (21, 21))
    plain = resample_pos_embed(pos, (21, 21), offset=None)
    assert paper.shape == plain.shape == (1 + 21 * 21, 8)
    torch.testing.assert_close(paper[0], pos[0])
    assert not torch.allclose(paper, plain, atol=1e-4)  # the +0.1 trick gives different numbers
    grid = pos[1:].reshape(1, 14, 14, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, scale_factor=(21.1 / 14, 21.1 / 14), mode="bicubic", align_corners=False)
    torch.testing.assert_close(paper[1:], ref.permute(0, 2, 3, 1).reshape(-1, 8))
    assert resample_pos_embed(pos, (14, 21)).shape == (1 + 14 * 21, 8)


@pytest.mark.parametrize("which", ["tiny_clip", "golden_clip"])
def test_truncated_text_equals_full_length(which, request):
    clip = request.getfixturevalue(which)
    prompts = ["a photo of a cat.", "a", "the embroidered potted plant in a video game.", "itap of my tv."]
    tokens = clip.tokenizer(prompts)
    with torch.no_grad():
        full = clip.model.encode_text(tokens)
        short = text_mod.encode_text_truncated(clip.model, tokens)
    torch.testing.assert_close(short, full, atol=1e-5, rtol=0)
    names = ["cat", "dog", "potted plant"]
    templates = load_templates()
    a = build_text_classifier(clip.model, clip.tokenizer, names, templates, truncate=True, batch_prompts=100)
    b = build_text_classifier(clip.model, clip.tokenizer, names, templates, truncate=False)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(3), atol=1e-6, rtol=0)


def test_text_classifier_matches_definition(golden_clip):
    """Per template normalise, mean, normalise (docs/method.md §3.1), written out directly."""
    clip = golden_clip
    templates = load_templates()
    assert len(templates) == 80 and templates[0] == "a bad photo of a {}."
    with torch.no_grad():
        rows = []
        for name in ["sky", "bed "]:
            f = clip.model.encode_text(clip.tokenizer([t.format(name) for t in templates]))
            f = f / f.norm(dim=-1, keepdim=True)
            f = f.mean(0)
            rows.append(f / f.norm())
        ref = torch.stack(rows)
    ours = build_text_classifier(clip.model, clip.tokenizer, ["sky", "bed "], templates)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_text_cache(golden_clip, monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPTRASE_CACHE", str(tmp_path))
    calls = []
    real = text_mod.build_text_classifier

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(text_mod, "build_text_classifier", counting)
    templates = load_templates()[:4]
    args = (golden_clip.model, golden_clip.tokenizer, golden_clip.model_id)
    first = cached_text_classifier(*args, ["a", "b"], templates)
    second = cached_text_classifier(*args, ["a", "b"], templates)
    assert len(calls) == 1 and torch.equal(first, second)
    cached_text_classifier(*args, ["a", "c"], templates)
    cached_text_classifier(*args, ["a", "b"], templates[:3])
    assert len(calls) == 3
    assert len(list((tmp_path / "text").glob("*.pt"))) == 3


def test_unknown_model_name_lists_valid():
    with pytest.raises(ValueError, match=r"unknown open_clip model 'ViT-Q-99'.*ViT-B-16"):
        load_clip("ViT-Q-99", "openai")


def test_unknown_pretrained_tag_lists_valid():
    with pytest.raises(
        ValueError, match=r"unknown pretrained tag 'nope' for 'ViT-B-16'; valid tags: .*openai"
    ):
        load_clip("ViT-B-16", "nope")


def test_weights_file_errors(tmp_path):
    bad = tmp_path / "not_clip.pt"
    torch.save({"weight": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="not an OpenAI-format CLIP ViT state dict"):
        load_clip(weights=bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_clip(weights=junk)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_clip(weights=tmp_path / "missing.pt")


def test_empty_class_list(golden_clip):
    with pytest.raises(ValueError, match="empty class list"):
        build_text_classifier(golden_clip.model, golden_clip.tokenizer, [], load_templates())


@pytest.mark.slow
def test_compiled_trunk_equals_eager(tiny_clip, images):
    """torch.compile of the leading blocks (inductor, CPU): tokens and q/k/v within 1e-5, same labels."""
    from cliptrase.method.runner import Predictor
    from cliptrase.method.trase import CLIPtraseOptions

    opts = CLIPtraseOptions(eps=0.7, min_samples=3)
    eager = Predictor(tiny_clip)
    compiled = Predictor(tiny_clip, compile=True)
    assert compiled.encoder.compiled and not eager.encoder.compiled
    text = eager.text_classifier(["cat", "dog", "sky"])
    a, b = eager.encode(images), compiled.encode(images)
    torch.testing.assert_close(b.tokens, a.tokens, atol=1e-5, rtol=0)
    for u, v in zip(a.qkv[-2], b.qkv[-2]):
        torch.testing.assert_close(v, u, atol=1e-5, rtol=0)
    assert torch.equal(compiled(images, text, opts).pred, eager(images, text, opts).pred)


def test_random_weights_cache_keyed_by_weights(tiny_arch, monkeypatch, tmp_path):
    """Same seed -> same weights -> cache hit; another seed -> another entry, never the first's rows."""
    from cliptrase.method.runner import Predictor
    from cliptrase.models.clip import RANDOM, load_clip

    monkeypatch.setenv("CLIPTRASE_CACHE", str(tmp_path))
    rows = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        pred = Predictor(load_clip(tiny_arch, RANDOM), templates="imagenet80")
        pred.templates = pred.templates[:2]
        rows.append(pred.text_classifier(["cat", "dog"]))
    assert len(list((tmp_path / "text").glob("*.pt"))) == 2
    assert torch.equal(rows[0], rows[1]) and not torch.allclose(rows[0], rows[2])
