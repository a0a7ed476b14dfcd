"""Bad input answered by one line naming the file or key.

Each case is what a new user types on a VOC21 copy with the tiny CLIP; the run must stop with a non-zero
status, print no traceback and name what to fix, and write no result.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.workspace import VOC_SUBDIR, WEIGHTS, Workspace, eval_args

pytestmark = pytest.mark.integration


def _missing_root(ws: Workspace) -> tuple[list[str], list[str]]:
    return [f"paths.data_root={ws.root / 'nothing'}"], [str(ws.root / "nothing"), "cliptrase data prepare"]


def _empty_split(ws: Workspace) -> tuple[list[str], list[str]]:
    split = ws.data / VOC_SUBDIR / "ImageSets" / "Segmentation" / "val.txt"
    split.write_text("")
    return [], [str(split), "empty"]


def _image_without_label(ws: Workspace) -> tuple[list[str], list[str]]:
    label = ws.data / VOC_SUBDIR / "SegmentationClass" / "2007_000033.png"
    label.unlink()
    return [], [str(label), "cliptrase data prepare"]


def _corrupt_jpeg(ws: Workspace) -> tuple[list[str], list[str]]:
    image = ws.data / VOC_SUBDIR / "JPEGImages" / "2007_000033.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return [], [str(image)]


def _weights_not_a_state_dict(ws: Workspace) -> tuple[list[str], list[str]]:
    weights = ws.root / "notes.pt"
    weights.write_text("these are not weights\n")
    return [f"model.weights={weights}"], [str(weights)]


CASES = {
    "missing data root": _missing_root,
    "empty split file": _empty_split,
    "image without label": _image_without_label,
    "corrupt jpeg": _corrupt_jpeg,
    "weights not a state dict": _weights_not_a_state_dict,
    "eps -1": lambda ws: (["method.eps=-1"], ["method.eps", "> 0"]),
    "precision fp8": lambda ws: (["precision=fp8"], ["precision='fp8'", "fp32, bf16, fp16"]),
    "max_images 0": lambda ws: (["max_images=0"], ["max_images=0", "an integer >= 1 or null"]),
    "max_images -2": lambda ws: (["max_images=-2"], ["max_images=-2", "an integer >= 1 or null"]),
    "unknown key": lambda ws: (["+max_imgs=2"], ["max_imgs", "max_images"]),
    "unknown open_clip name": lambda ws: (
        ["model=vit_b16_openai", "model.name=ViT-Nope-16"],
        ["ViT-Nope-16"],
    ),
    "unknown pretrained tag": lambda ws: (
        ["model=vit_b16_openai", "model.pretrained=no_such_tag"],
        ["no_such_tag"],
    ),
}


FAST = ("missing data root", "corrupt jpeg", "max_images -2", "eps -1")
"""Cases of the default run (one per way of failing: data layout, a worker process, a knob, a method
value); the others are ``slow`` to keep the default suite within its time budget."""


@pytest.mark.parametrize("case", [c if c in FAST else pytest.param(c, marks=pytest.mark.slow) for c in CASES])
def test_bad_input_is_one_line(ws: Workspace, voc: Path, case: str):
    overrides, named = CASES[case](ws)
    result = ws.eval(*overrides)
    result.assert_user_error(*named)
    assert not ws.records()


def _results_dir_below_a_file(ws: Workspace) -> tuple[list[str], list[str]]:
    afile = ws.root / "afile"
    afile.write_text("not a folder\n")
    return [f"paths.results_dir={afile / 'x'}"], [f"{afile} is a file", "paths.results_dir"]


def _results_dir_not_writable(ws: Workspace) -> tuple[list[str], list[str]]:
    folder = ws.root / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return [f"paths.results_dir={folder / 'x'}"], [str(folder / "x"), "not writable", "paths.results_dir"]


HYDRA_SETUP = {
    "results dir below a file": _results_dir_below_a_file,
    "results dir not writable": _results_dir_not_writable,
    "unknown launcher": lambda ws: (
        ["hydra/launcher=nosuch"],
        ["hydra/launcher/nosuch", "valid hydra/launcher options: basic"],
    ),
}
"""What Hydra fails on while it sets the run up, before the task function: checked first
(:mod:`cliptrase.harness.preflight`), so it ends like any other bad input."""


@pytest.mark.parametrize("case", list(HYDRA_SETUP))
def test_hydra_setup_error_is_one_line_exit_2(ws: Workspace, voc: Path, case: str):
    if case == "results dir not writable" and os.geteuid() == 0:
        pytest.skip("root writes into a read-only (0o555) folder, so there is nothing to refuse")
    overrides, named = HYDRA_SETUP[case](ws)
    result = ws.eval(*overrides)
    result.assert_user_error(*named)
    assert result.returncode == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not ws.records()


def test_copied_dataset_config_with_another_vocabulary_is_refused(ws: Workspace, voc: Path):
    """A config copied from voc20.yaml for a 5-class dataset keeps ``paper_key: VOC20``."""
    extra = ws.root / "my_configs" / "dataset"
    extra.mkdir(parents=True)
    (extra / "shapes.yaml").write_text(
        "# @package dataset\n"
        "name: shapes\ntype: DemoDataset\ndata_root: null\nimg_dir: JPEGImages\nann_dir: SegmentationClass\n"
        "split: ImageSets/Segmentation/val.txt\nnum_classes: 5\nhas_background: false\n"
        "paper_key: VOC20\nstandard_vocab: null\nexpected_val_images: 6\n"
    )
    result = ws.eval("dataset=shapes", f"hydra.searchpath=[file://{extra.parent}]")
    result.assert_user_error("paper vocabulary of 'shapes' has 20 classes", "paper_key")
    assert not ws.records()


@pytest.mark.slow
def test_reproduce_checks_exactly_what_data_check_checks(ws: Workspace, voc: Path):
    """On a 3-image VOC copy both commands fail the same check; ``--subset`` passes both."""
    check = ws.run("cliptrase", "data", "check", "voc21")
    check.assert_user_error("3 images listed, expected 1449", "--subset")
    reproduce = ws.run("cliptrase", "reproduce", "paper", "--datasets", "voc21", "--weights", str(WEIGHTS))
    reproduce.assert_user_error("check: failed: voc21: [count] 3 images listed, expected 1449")
    assert "download: skipped" in reproduce.output and not list(ws.results.rglob("metrics.json"))
    ws.run("cliptrase", "data", "check", "voc21", "--subset").assert_ok()


@pytest.mark.parametrize("switch", ["CLIPTRASE_DEBUG", "HYDRA_FULL_ERROR"])
def test_debug_switch_shows_the_traceback(ws: Workspace, voc: Path, switch: str):
    result = ws.run("cliptrase-eval", *eval_args("method.eps=-1"), env={switch: "1"})
    assert result.returncode != 0 and "Traceback" in result.output and "method.eps" in result.output
