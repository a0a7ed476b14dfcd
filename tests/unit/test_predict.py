"""``cliptrase predict``: one image and a free class list -> label PNG + overlay, through the library
(:mod:`cliptrase.inference.single_image`) and through the console script's parser and error boundary."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cliptrase.cli.main import main
from cliptrase.errors import ExitCode
from cliptrase.inference.single_image import class_shares, input_size, load_image, segment_image
from cliptrase.models.clip import RANDOM, load_clip


def _image(path, h: int = 40, w: int = 56) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def test_input_size_keeps_the_short_side_and_patch_multiples():
    assert input_size((40, 56), 224, 16) == (224, 320)  # 56 * 224/40 = 313.6 -> 320
    assert input_size((500, 375), 336, 14) == (448, 336)


def test_segment_image_labels_every_pixel_at_the_image_size(tmp_path, tiny_arch):
    _image(tmp_path / "a.png")
    clip = load_clip(tiny_arch, RANDOM, device="cpu")
    names = ["sky", "grass", "house"]
    labels = segment_image(clip, load_image(tmp_path / "a.png"), names, size=224)
    assert labels.shape == (40, 56) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < len(names)
    assert class_shares(labels, names).endswith("%")


def test_cli_writes_labels_and_overlay(tmp_path, tiny_arch):
    _image(tmp_path / "a.png")
    argv = ["predict", str(tmp_path / "a.png"), "--classes", "sky,grass", "--model", tiny_arch]
    assert main([*argv, "--pretrained", RANDOM, "--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    with Image.open(tmp_path / "out" / "a_labels.png") as labels:
        assert labels.size == (56, 40)
    assert (tmp_path / "out" / "a_overlay.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.png", "--classes", "a,b"], "image missing.png does not exist"),
        (["{image}", "--classes", "a,,b"], "--classes must be a comma-separated list"),
        (["{image}", "--classes", "a,a"], "--classes has duplicate names"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, caplog, args, message, monkeypatch):
    _image(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    argv = ["predict", *(a.format(image=tmp_path / "a.png") for a in args)]
    assert main(argv) == ExitCode.USER_ERROR
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]
