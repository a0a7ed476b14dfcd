"""Decoding as the reference does: images per protocol, and one GT path for 8- and 16-bit label maps.

* ``paper`` protocols decode like the authors' script, ``Image.open(path).convert("RGB")`` (EXIF ignored);
* ``standard`` protocols like the peers' mmseg configs, mmcv's default ``LoadImageFromFile`` (cv2);
* the harness's paper GT crop equals ``preprocess_gt`` (what the golden suite checks) on the file's own mode.
"""

from __future__ import annotations

from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from helpers.config import compose_eval
from mmcv.transforms import LoadImageFromFile
from PIL import Image

from cliptrase.config import validate
from cliptrase.datasets.base import LoadAnnotationsU16
from cliptrase.engine.segmentor import ClipSegDataPreProcessor
from cliptrase.errors import DataError
from cliptrase.protocols.paper import preprocess_gt
from cliptrase.protocols.pipeline import build_pipeline
from cliptrase.protocols.transforms import LoadImageAsAuthors, PaperResizeCrop, paper_crop_gt

EXIF_ORIENTATION = 0x0112


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An RGB image with structure (so a rotation is visible) and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), (x + y) % 256], -1)
    return np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)


def _write(kind: str, folder: Path) -> Path:
    """An image file of the given kind, 40 wide x 60 high as stored."""
    rgb = Image.fromarray(_scene(60, 40))
    if kind == "exif_rotated_jpeg":
        path = folder / "exif.jpg"
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = 6  # "rotate 90 CW to display"
        rgb.save(path, quality=95, exif=exif)
    elif kind == "greyscale_jpeg":
        path = folder / "grey.jpg"
        rgb.convert("L").save(path, quality=95)
    elif kind == "cmyk_jpeg":
        path = folder / "cmyk.jpg"
        rgb.convert("CMYK").save(path, quality=95)
    elif kind == "palette_png":
        path = folder / "palette.png"
        rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path)
    elif kind == "rgba_png":
        path = folder / "rgba.png"
        rgba = rgb.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(path)
    elif kind == "exif_rotated_png":
        path = folder / "exif.png"
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = 8
        rgb.save(path, exif=exif)
    else:
        raise AssertionError(kind)
    return path


KINDS = ["exif_rotated_jpeg", "greyscale_jpeg", "cmyk_jpeg", "palette_png", "rgba_png", "exif_rotated_png"]


@pytest.mark.parametrize("kind", KINDS)
def test_paper_protocol_decodes_as_the_authors(tmp_path, kind):
    path = _write(kind, tmp_path)
    with Image.open(path) as im:
        reference = np.asarray(im.convert("RGB"))  # the authors' call
    out = LoadImageAsAuthors()(dict(img_path=str(path)))
    np.testing.assert_array_equal(out["img"][..., ::-1], reference)
    assert out["img"].shape == (60, 40, 3)  # EXIF orientation ignored: stored size
    assert out["ori_shape"] == (60, 40)


@pytest.mark.parametrize("kind", KINDS)
def test_standard_protocol_decodes_as_mmseg_default(tmp_path, kind):
    path = _write(kind, tmp_path)
    reference = mmcv.imfrombytes(path.read_bytes(), flag="color", backend="cv2")  # mmseg's default loader
    out = LoadImageFromFile()(dict(img_path=str(path)))
    np.testing.assert_array_equal(out["img"], reference)


def test_exif_orientation_differs_between_the_two_references(tmp_path):
    """Why the protocols must not share one decoder: cv2 applies EXIF orientation 6, PIL's open ignores it."""
    path = _write("exif_rotated_jpeg", tmp_path)
    assert mmcv.imfrombytes(path.read_bytes(), flag="color", backend="cv2").shape[:2] == (40, 60)
    assert LoadImageAsAuthors()(dict(img_path=str(path)))["img"].shape[:2] == (60, 40)


def test_pipelines_use_the_reference_decoders():
    groups = {p: validate(compose_eval(["dataset=voc21", f"protocol={p}"])) for p in ("paper224", "standard")}
    paper, _ = build_pipeline(groups["paper224"]["dataset"], groups["paper224"]["protocol"], 20)
    standard, _ = build_pipeline(groups["standard"]["dataset"], groups["standard"]["protocol"], None)
    assert paper[0] == {"type": "LoadImageAsAuthors"}
    assert standard[0] == {"type": "LoadImageFromFile"}  # mmseg's default: cv2 backend, flag "color"
    assert standard[1]["scale"] == (2048, 336)  # the short side, resolved by ProtocolConfig.for_dataset


def test_the_standard_pipeline_reads_the_short_side_of_its_dataset():
    """``short_side_by_dataset`` applies through ``ProtocolConfig.for_dataset`` (cityscapes: 560)."""
    groups = validate(compose_eval(["dataset=cityscapes", "protocol=standard"]))
    steps, _ = build_pipeline(groups["dataset"], groups["protocol"], None)
    assert steps[1]["scale"] == (2048, groups["protocol"].for_dataset("cityscapes").short_side) == (2048, 560)


def _label(shape: tuple[int, int], path: Path, dtype=np.uint8) -> Path:
    rng = np.random.default_rng(1)
    high = 21 if dtype == np.uint8 else 847
    Image.fromarray(rng.integers(0, high, shape).astype(dtype)).save(path)
    return path


def _load_pair(img: Path, label: Path, loader) -> dict:
    results = loader(dict(img_path=str(img)))
    results.update(seg_map_path=str(label), reduce_zero_label=False, seg_fields=[])
    return LoadAnnotationsU16()(results)


def test_rotated_image_with_unrotated_label_is_a_clear_error(tmp_path):
    img = _write("exif_rotated_jpeg", tmp_path)
    label = _label((60, 40), tmp_path / "exif.png")
    ok = _load_pair(img, label, LoadImageAsAuthors())  # paper: EXIF ignored, sizes agree
    assert ok["gt_seg_map"].shape == (60, 40)
    with pytest.raises(DataError) as err:
        _load_pair(img, label, LoadImageFromFile())  # standard: cv2 rotates the image only
    msg = str(err.value)
    assert str(img) in msg and str(label) in msg and "60x40" in msg and "40x60" in msg


# ----------------------------------------------------------------------------------- one GT path


SHAPES = [(37, 53), (53, 37), (512, 683), (683, 512), (375, 500), (333, 501)]


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("size", [224, 336])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{h}x{w}" for h, w in SHAPES])
def test_harness_gt_crop_equals_preprocess_gt(tmp_path, bits, size, shape):
    """PaperResizeCrop (the harness) and preprocess_gt (the golden suite) on the same label file."""
    if bits == 8:
        path = _label(shape, tmp_path / "gt.png", np.uint8)
    else:
        path = tmp_path / "gt.tif"
        labels = np.random.default_rng(2).integers(0, 847, shape).astype(np.uint16)
        labels[:3, :5] = 65535
        Image.fromarray(labels).save(path)
    with Image.open(path) as im:
        assert im.mode == ("L" if bits == 8 else "I;16")
        reference = preprocess_gt(im, size)  # the authors' call on the file as it opens
    img = tmp_path / "img.png"
    Image.fromarray(_scene(*shape)).save(img)
    results = _load_pair(img, path, LoadImageAsAuthors())
    out = PaperResizeCrop(size=size, rule="identity")(results)
    np.testing.assert_array_equal(out["gt_seg_map"], reference.astype(np.int64))


def test_resizing_16_bit_maps_as_int32_would_differ():
    """The defect the test above guards: Pillow's nearest resize picks other pixels in mode I than I;16."""
    labels = np.random.default_rng(2).integers(0, 847, (512, 683)).astype(np.uint16)
    as_file = preprocess_gt(Image.fromarray(labels), 336)
    as_int32 = preprocess_gt(Image.fromarray(labels.astype(np.int32), mode="I"), 336)
    assert (as_file != as_int32).any()
    np.testing.assert_array_equal(paper_crop_gt(labels.astype(np.int64), 336, "identity", "uint16"), as_file)


def test_reduce_zero_rule_commutes_with_the_resize():
    labels = np.random.default_rng(3).integers(0, 22, (300, 451)).astype(np.uint8)
    labels[labels == 21] = 255
    stored = labels.astype(np.int64) - 1
    stored[(labels == 0) | (labels == 255)] = 255
    reference = preprocess_gt(Image.fromarray(stored.astype(np.uint8)), 224)  # the authors' stored file
    np.testing.assert_array_equal(paper_crop_gt(labels, 224, "reduce_zero", "uint8"), reference)


@pytest.mark.parametrize("unit_scale", [True, False])
@pytest.mark.parametrize("bgr_to_rgb", [True, False])
def test_preprocessor_normalises_as_the_reference_arithmetic_and_keeps_its_input(unit_scale, bgr_to_rgb):
    """``(x / 255 - mean) / std`` in RGB (or mmseg's ``(x - mean) / std`` with ``unit_scale=False``), bit for
    bit as written out of place, computed in place on its own copy: a float input is left as it was."""
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    if not unit_scale:
        mean, std = tuple(255 * m for m in mean), tuple(255 * s for s in std)
    pre = ClipSegDataPreProcessor(mean, std, bgr_to_rgb=bgr_to_rgb, unit_scale=unit_scale)
    img = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 21, 34), dtype=np.uint8))
    for x in (img, img.float()):
        before = x.clone()
        (out,) = pre({"inputs": [x], "data_samples": None})["inputs"]
        ref = x.float() / 255 if unit_scale else x.float()
        ref = ref.flip(0) if bgr_to_rgb else ref
        ref = (ref - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        assert torch.equal(out.view(torch.int32), ref.view(torch.int32))
        assert torch.equal(x, before)
