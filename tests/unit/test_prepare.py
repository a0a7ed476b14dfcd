"""Converters on synthetic raw input in the official formats reproduce the expected maps pixel for pixel."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from helpers.miniatures import label_with, write_ade150, write_image, write_label, write_voc
from PIL import Image
from scipy.io import savemat

from cliptrase.datasets import build_dataset, load_dataset_config
from cliptrase.datasets.prepare import _common as common
from cliptrase.datasets.prepare import prepare_dataset
from cliptrase.datasets.prepare._rle import rle_counts_from_string, rle_decode, segmentation_decode
from cliptrase.datasets.prepare.ade847 import class_codes, resized_hw
from cliptrase.datasets.prepare.cityscapes import ID_TO_TRAIN_ID
from cliptrase.datasets.prepare.coco import object_lut, stuff_lut
from cliptrase.datasets.vocab import read_paper_names

H, W = 10, 12


def read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def rle_string(counts: list[int]) -> str:
    """pycocotools' ``rleToString``, written from its specification, to encode test masks."""
    chars = []
    for i, value in enumerate(counts):
        x = value - counts[i - 2] if i > 2 else value
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            chars.append(chr((c | 0x20 if more else c) + 48))
    return "".join(chars)


def rle_counts(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], edges])).tolist()


# --------------------------------------------------------------------------------------------- RLE decoding


def test_rle_roundtrip_compressed_and_uncompressed():
    rng = np.random.default_rng(0)
    for shape in [(H, W), (37, 5), (1, 300)]:
        mask = rng.random(shape) > 0.6
        counts = rle_counts(mask)
        assert rle_counts_from_string(rle_string(counts)) == counts
        for counts_field in (rle_string(counts), counts):
            np.testing.assert_array_equal(rle_decode({"size": list(shape), "counts": counts_field}), mask)


def test_rle_rejects_a_wrong_size_and_decodes_polygons():
    with pytest.raises(ValueError, match="expected 10x12"):
        rle_decode({"size": [H, W], "counts": [5, 5]})
    square = segmentation_decode([[2, 3, 6, 3, 6, 7, 2, 7]], H, W)
    assert square[4:7, 3:6].all() and 16 <= square.sum() <= 25 and not square[:3].any()


def test_rle_matches_pycocotools_when_installed():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(1)
    for shape in [(H, W), (375, 500), (1, 300)]:
        for density in (0.05, 0.5, 0.95):
            mask = (rng.random(shape) < density).astype(np.uint8)
            encoded = mask_utils.encode(np.asfortranarray(mask))
            np.testing.assert_array_equal(rle_decode(encoded), mask.astype(bool))
    polygon = [[2, 3, 6, 3, 6, 7, 2, 7]]
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygon, H, W))).astype(bool)
    np.testing.assert_array_equal(segmentation_decode(polygon, H, W), expected)


# ------------------------------------------------------------------------------------------- VOC and ADE-150


def test_voc_copies_the_val_split_and_skips_on_rerun(tmp_path):
    raw = tmp_path / "raw"
    write_voc(raw)
    root = prepare_dataset("voc21", raw, tmp_path / "data", workers=1)
    src = tree(raw / "VOCdevkit/VOC2012")
    out = tree(root)
    assert set(out) == {k for k in src if "000039" not in k}  # the train sample is left out
    assert all(out[k] == src[k] for k in out if "ImageSets" not in k)  # labels used as they are
    assert out["ImageSets/Segmentation/val.txt"].decode().split() == [
        "2007_000032",
        "2007_000033",
        "2007_000042",
    ]
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    prepare_dataset("voc20", raw, tmp_path / "data", workers=1)
    assert before == {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}


def test_ade150_copies_validation_as_is(tmp_path):
    raw = tmp_path / "raw"
    write_ade150(raw / "x")  # writes raw/x/ade/ADEChallengeData2016
    root = prepare_dataset("ade150", raw / "x" / "ade", tmp_path / "data", workers=2)
    assert tree(root) == tree(raw / "x/ade/ADEChallengeData2016")
    assert len(build_dataset(load_dataset_config("ade150", tmp_path / "data"))) == 2


# ------------------------------------------------------------------------------------------ PASCAL Context


def _detail_raw(raw: Path) -> dict[str, np.ndarray]:
    """VOC2010 images, a trainval_merged.json and trainval/*.mat; returns the expected PC60 maps."""
    voc2010 = raw / "VOCdevkit" / "VOC2010"
    a = np.zeros((H, W), bool)
    a[1:6, 2:9] = True
    b = np.zeros((H, W), bool)
    b[4:9, 5:11] = True
    c = np.zeros((H, W), bool)
    c[0:2, 0:3] = True
    images = [
        dict(image_id=2008000002, file_name="2008_000002.jpg", height=H, width=W, phase="val"),
        dict(image_id=2008000003, file_name="2008_000003.jpg", height=H, width=W, phase="train"),
        dict(image_id=2008000080, file_name="2008_000080.jpg", height=H, width=W, phase="val"),
    ]
    annos = [
        dict(
            id=1,
            image_id=2008000002,
            category_id=2,
            segmentation={"size": [H, W], "counts": rle_string(rle_counts(a))},
        ),
        dict(
            id=2, image_id=2008000002, category_id=458, segmentation={"size": [H, W], "counts": rle_counts(b)}
        ),
        dict(
            id=3, image_id=2008000003, category_id=9, segmentation={"size": [H, W], "counts": rle_counts(a)}
        ),
        dict(
            id=4,
            image_id=2008000080,
            category_id=260,
            segmentation={"size": [H, W], "counts": rle_string(rle_counts(c))},
        ),
        dict(
            id=5,
            image_id=2008000080,
            category_id=1,
            segmentation={"size": [H, W], "counts": rle_string(rle_counts(c))},
        ),
    ]
    raw.mkdir(parents=True)
    (raw / "trainval_merged.json").write_text(
        json.dumps(dict(images=images, annos_segmentation=annos, categories=[]))
    )
    for i, img in enumerate(images):
        write_image(voc2010 / "JPEGImages" / img["file_name"], H, W, seed=i)
    first = np.zeros((H, W), np.uint8)
    first[a] = 1  # Detail id 2 (aeroplane) -> PC60 1
    first[b] = 59  # id 458 (wood) -> 59, painted later so it wins the overlap
    second = np.zeros((H, W), np.uint8)  # id 260 (person, 37) painted, then id 1 (not a PC60 class) -> 0
    return {"2008_000002": first, "2008_000080": second}


def test_context_from_detail_json(tmp_path):
    raw = tmp_path / "raw"
    expected = _detail_raw(raw)
    root = prepare_dataset("context59", raw, tmp_path / "data", workers=1)
    for stem, labels in expected.items():
        np.testing.assert_array_equal(read(root / "SegmentationClassContext" / f"{stem}.png"), labels)
    assert (root / "ImageSets/SegmentationContext/val.txt").read_text().split() == sorted(expected)
    assert sorted(p.name for p in (root / "JPEGImages").iterdir()) == ["2008_000002.jpg", "2008_000080.jpg"]
    assert len(build_dataset(load_dataset_config("context60", tmp_path / "data"))) == 2


def test_context459_from_label_map_mats(tmp_path):
    raw = tmp_path / "raw"
    _detail_raw(raw)
    label_map = label_with([1, 301, 459, 0], np.uint16)  # 1-based; 0 = unlabelled
    savemat(raw / "2008_000002.mat", {"LabelMap": label_map})
    (raw / "trainval").mkdir()
    (raw / "2008_000002.mat").rename(raw / "trainval" / "2008_000002.mat")
    savemat(
        raw / "trainval" / "2008_000080.mat", {"LabelMap": label_with([256, 5], np.uint16).astype(np.float64)}
    )
    root = prepare_dataset("context459", raw, tmp_path / "data", workers=1)
    first = read(root / "annotations_detectron2/pc459_val/2008_000002.tif")
    assert first.dtype == np.uint16
    np.testing.assert_array_equal(first, label_with([0, 300, 458, 65535], np.uint16))
    np.testing.assert_array_equal(
        read(root / "annotations_detectron2/pc459_val/2008_000080.tif"), label_with([255, 4])
    )
    dataset = build_dataset(load_dataset_config("context459", tmp_path / "data"))
    assert set(dataset[0]["data_samples"].gt_sem_seg.data.unique().tolist()) == {0, 300, 458, 65535}


# ------------------------------------------------------------------------------------------------------- COCO

RAW_COCO = [0, 11, 12, 89, 90, 91, 181, 255]
"""Raw values: person, unused, 3rd used, toothbrush, unused, banner (first stuff), wood (last), unlabeled."""


def _coco_raw(raw: Path) -> None:
    for i, stem in enumerate(["000000000139", "000000000285"]):
        write_image(raw / "images/val2017" / f"{stem}.jpg", H, W, seed=i)
        write_label(
            raw / "annotations/val2017" / f"{stem}.png", label_with(RAW_COCO[i::2] if i else RAW_COCO)
        )


def test_coco_lookup_tables():
    stuff, obj = stuff_lut(), object_lut()
    assert stuff[RAW_COCO].tolist() == [0, 255, 11, 79, 255, 80, 170, 255]
    assert obj[RAW_COCO].tolist() == [1, 0, 12, 80, 0, 0, 0, 0]
    assert sorted(set(stuff[:182].tolist()) - {255}) == list(range(171))
    assert sorted(set(obj.tolist())) == list(range(81))


@pytest.mark.parametrize(
    ("name", "suffix", "lut"),
    [
        ("coco_stuff171", "_labelTrainIds.png", stuff_lut()),
        ("coco_object", "_instanceTrainIds.png", object_lut()),
    ],
)
def test_coco_converters(tmp_path, name, suffix, lut):
    raw = tmp_path / "raw"
    _coco_raw(raw)
    root = prepare_dataset(name, raw, tmp_path / "data", workers=1)
    for stem in ["000000000139", "000000000285"]:
        expected = lut[read(raw / "annotations/val2017" / f"{stem}.png")]
        np.testing.assert_array_equal(read(root / "annotations/val2017" / f"{stem}{suffix}"), expected)
    assert len(build_dataset(load_dataset_config(name, tmp_path / "data"))) == 2


def test_interrupted_run_leaves_no_truncated_file_and_resumes(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    _coco_raw(raw)
    real_replace = common.os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(common.os, "replace", flaky_replace)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("coco_stuff171", raw, tmp_path / "data", workers=1)
    labels = tmp_path / "data/coco_stuff164k/annotations/val2017"
    assert [p.name for p in labels.glob("*.png")] == ["000000000139_labelTrainIds.png"]  # complete or absent
    monkeypatch.setattr(common.os, "replace", real_replace)
    prepare_dataset("coco_stuff171", raw, tmp_path / "data", workers=1)
    assert sorted(p.name for p in labels.iterdir()) == [
        "000000000139_labelTrainIds.png",
        "000000000285_labelTrainIds.png",
    ]


# ------------------------------------------------------------------------------------------------- Cityscapes


def test_cityscapes_label_ids_to_train_ids(tmp_path):
    raw = tmp_path / "raw" / "cityscapes"
    ids = label_with([0, 7, 8, 24, 33, 34 - 1, 1, 26])
    for i, stem in enumerate(["frankfurt/frankfurt_000000_000294", "lindau/lindau_000000_000019"]):
        write_image(raw / "leftImg8bit/val" / f"{stem}_leftImg8bit.png", H, W, seed=i)
        write_label(raw / "gtFine/val" / f"{stem}_gtFine_labelIds.png", ids)
    root = prepare_dataset("cityscapes", raw.parent, tmp_path / "data", workers=1)
    expected = label_with([255, 0, 1, 11, 18, 18, 255, 13])
    out = read(root / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png")
    np.testing.assert_array_equal(out, expected)
    assert len(build_dataset(load_dataset_config("cityscapes", tmp_path / "data"))) == 2
    assert len(ID_TO_TRAIN_ID) == 19 and sorted(ID_TO_TRAIN_ID.values()) == list(range(19))


# ---------------------------------------------------------------------------------------------------- ADE-847


def _ade_full_raw(raw: Path, sizes: dict[str, tuple[int, int]]) -> tuple[list[str], dict[str, np.ndarray]]:
    """An ADE20K_2021_17_01 with a shuffled objectnames list; returns it and each image's class codes."""
    root = raw / "ADE20K_2021_17_01"
    names = read_paper_names("ADEfull")
    objectnames = [*names, "extra thing", "another thing"]
    np.random.default_rng(0).shuffle(objectnames)
    folder = "ADE20K_2021_17_01/images/ADE/validation/urban/street"
    codes = {}
    rng = np.random.default_rng(1)
    for i, (filename, (height, width)) in enumerate(sizes.items()):
        code = rng.integers(0, len(objectnames) + 1, size=(height, width))
        code[0, 0] = 0  # unlabelled
        seg = np.zeros((height, width, 3), np.uint8)
        seg[..., 0] = (code // 256) * 10 + rng.integers(0, 10, size=code.shape)  # R // 10 drops the rest
        seg[..., 1] = code % 256
        seg[..., 2] = 7
        write_image(raw / folder / filename, height, width, seed=i)
        Image.fromarray(seg).save(raw / folder / filename.replace(".jpg", "_seg.png"))
        codes[filename] = code
    write_image(raw / folder.replace("validation", "training") / "ADE_train_00000001.jpg", H, W)
    index = dict(
        filename=[*sizes, "ADE_train_00000001.jpg"],
        folder=[folder] * len(sizes) + [folder.replace("validation", "training")],
        objectnames=objectnames,
    )
    with (root / "index_ade20k.pkl").open("wb") as handle:
        pickle.dump(index, handle)
    return objectnames, codes


def test_ade847_codes_names_and_resize(tmp_path):
    raw = tmp_path / "raw"
    sizes = {"ADE_val_00000001.jpg": (H, W), "ADE_val_00000002.jpg": (520, 600)}
    objectnames, codes = _ade_full_raw(raw, sizes)
    root = prepare_dataset("ade847", raw, tmp_path / "data", workers=1)
    names = read_paper_names("ADEfull")
    code_to_train = np.full(len(objectnames) + 1, 65535)
    for position, name in enumerate(objectnames):
        if name in names:
            code_to_train[position + 1] = names.index(name)
    small = read(root / "annotations_detectron2/validation/ADE_val_00000001.tif")
    assert small.dtype == np.uint16
    np.testing.assert_array_equal(small, code_to_train[codes["ADE_val_00000001.jpg"]])
    large = read(root / "annotations_detectron2/validation/ADE_val_00000002.tif")
    assert large.shape == (512, 591) == resized_hw(520, 600)
    assert set(np.unique(large).tolist()) <= set(code_to_train.tolist())
    assert read(root / "images_detectron2/validation/ADE_val_00000002.jpg").shape == (512, 591, 3)
    assert not (root / "images_detectron2/training").exists()
    dataset = build_dataset(load_dataset_config("ade847", tmp_path / "data"))
    assert int(dataset[0]["data_samples"].gt_sem_seg.data.max()) == 65535


def test_ade847_uses_an_explicit_id_map(tmp_path):
    raw = tmp_path / "raw"
    _, codes = _ade_full_raw(raw, {"ADE_val_00000001.jpg": (H, W)})
    table = tmp_path / "ade847_ids.json"
    table.write_text(
        json.dumps([{"id": 5, "trainId": 300, "name": "x"}, {"id": 6, "trainId": 846, "name": "y"}])
    )
    root = prepare_dataset("ade847", raw, tmp_path / "data", workers=1, id_map=table)
    code = codes["ADE_val_00000001.jpg"]
    expected = np.where(code == 5, 300, np.where(code == 6, 846, 65535))
    np.testing.assert_array_equal(
        read(root / "annotations_detectron2/validation/ADE_val_00000001.tif"), expected
    )


def test_ade847_class_codes_and_resize_rule():
    seg = np.array([[[0, 0, 0], [19, 255, 0], [250, 3, 9]]], np.uint8)
    assert class_codes(seg).tolist() == [[0, 256 + 255, 25 * 256 + 3]]
    assert resized_hw(512, 900) is None and resized_hw(600, 513) == (599, 512)


# -------------------------------------------------------------------------------------------------- bad input


def test_bad_input_errors(tmp_path):
    with pytest.raises(KeyError, match="valid: ade150, ade847"):
        prepare_dataset("ade", tmp_path, tmp_path / "data")
    with pytest.raises(FileNotFoundError, match=r"--raw directory .*missing not found"):
        prepare_dataset("voc21", tmp_path / "missing", tmp_path / "data")
    with pytest.raises(FileNotFoundError, match=r"VOC2012 folder not found .*tar xf"):
        prepare_dataset("voc21", tmp_path, tmp_path / "data")
    with pytest.raises(ValueError, match="id_map do not apply to voc21"):
        prepare_dataset("voc21", tmp_path, tmp_path / "data", id_map=tmp_path / "x.json")


def test_demo_prepare_generates_it(tmp_path):
    root = prepare_dataset("demo", None, tmp_path / "demo")
    assert (root / "ImageSets/Segmentation/val.txt").is_file()
