"""The harness end to end: Hydra config -> dataset -> registered segmentor -> runner -> metric -> record.

Includes the acceptance check that the whole harness reproduces the golden metrics of the paper protocol:
each golden case's images and GT are written as a miniature dataset in its benchmark's on-disk layout and
evaluated with the golden weights file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.config import compose_eval
from helpers.golden import GOLDEN_DIR, golden_weights
from PIL import Image

from cliptrase.datasets.config_files import load_dataset_config
from cliptrase.harness.run import run
from cliptrase.inference.prediction_files import DISPLAY_SIDE
from cliptrase.paths import config_dir

CONFIG_DIR = str(config_dir())

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

# golden dataset key -> (dataset config, how the authors' stored GT is written in that benchmark's layout)
GOLDEN_LAYOUT = {
    "VOC20": ("voc20", "unreduce"),
    "VOC21": ("voc21", "unreduce"),
    "PC59": ("context59", "unreduce"),
    "PC60": ("context60", "unreduce"),
    "ADE150": ("ade150", "unreduce"),
    "PC459": ("context459", "identity"),
    "ADEfull": ("ade847", "identity"),
    "COCO171_val": ("coco_stuff171", "identity"),
    "COCO80_val": ("coco_object", "identity"),
}


def _write_case(case: dict, arrays: dict, data_root: Path) -> str:
    """Write a golden case as a miniature copy of its benchmark; return the dataset config name."""
    name, encoding = GOLDEN_LAYOUT[case["dataset_key"]]
    cfg = load_dataset_config(name, data_root)
    root = Path(cfg.data_root)
    img_dir, ann_dir = root / cfg.img_dir, root / cfg.ann_dir
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    from cliptrase.datasets.spec import get_dataset_class

    cls = get_dataset_class(cfg.type)
    seg_suffix = "_labelTrainIds.png" if case["dataset_key"] == "COCO80_val" else cls.SEG_MAP_SUFFIX
    stems = []
    for i, fname in enumerate(case["files"]):
        stem = Path(fname).stem
        stems.append(stem)
        Image.fromarray(arrays[f"{i}/image"]).save(img_dir / f"{stem}.png")  # lossless: exact pixels
        gt = arrays[f"{i}/gt"]
        if encoding == "unreduce":  # the authors' detectron2 encoding (0..C-1, 255) back to raw (0 = bg)
            raw = gt.astype(np.int64) + 1
            raw[gt == 255] = 0
            # 254 (an out-of-range label) has no raw uint8 preimage (raw 255 is void); raw 254 gives 253,
            # equally out of range: ignored by the metric and, like 254, not "only 255" for the skip rule.
            raw[gt == 254] = 254
            gt = raw.astype(gt.dtype)
        Image.fromarray(gt).save(ann_dir / f"{stem}{seg_suffix}")
    if cfg.split:
        split = root / cfg.split
        split.parent.mkdir(parents=True, exist_ok=True)
        split.write_text("\n".join(stems) + "\n")
    return name


def _golden_cases() -> list[str]:
    index = GOLDEN_DIR / "cases.json"
    if not index.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{index} not found"), id="no-golden")]
    return sorted(json.loads(index.read_text())["cases"])


@pytest.mark.golden
@pytest.mark.parametrize("name", _golden_cases())
def test_harness_reproduces_golden_metrics(name, tmp_path):
    weights = golden_weights()
    case = json.loads((GOLDEN_DIR / "cases.json").read_text())["cases"][name]
    with np.load(GOLDEN_DIR / f"{name}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    dataset = _write_case(case, arrays, tmp_path / "data")
    cfg = compose_eval(
        [
            f"dataset={dataset}",
            f"protocol=paper{case['image_size']}",
            "model=weights_file",
            f"model.weights={weights}",
            "+dataset.img_suffix=.png",
            f"paths.data_root={tmp_path / 'data'}",
            f"paths.results_dir={tmp_path / 'results'}",
            "experiment_name=golden",
            "batch_size=2",
            # The synthetic VOC21 scenes hold an out-of-range label (254) on purpose: scored as the
            # authors' script scores it (left out), and counted in the record.
            "allow_invalid_labels=true",
        ]
    )
    metrics = run(cfg)
    for key, ref in case["metrics"].items():
        assert metrics[key] == pytest.approx(ref, abs=1e-9), f"{name} {key}: {metrics[key]} != {ref}"
    records = list((tmp_path / "results" / "golden").glob("*/metrics.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["metric_definition"] == "paper_scores"
    assert record["provenance"]["n_images"] == case["n_images"]
    out_of_range = sum(int((arrays[f"{i}/gt"] == 254).sum()) for i in range(case["n_images"]))
    assert record["provenance"]["invalid_label_pixels"] == out_of_range


def test_demo_standard_protocol_runs_and_resumes(tmp_path, caplog):
    weights = golden_weights()
    overrides = [
        "dataset=demo",
        "protocol=standard",
        "model=weights_file",
        f"model.weights={weights}",
        f"paths.results_dir={tmp_path / 'results'}",
        f"+dataset.data_root={tmp_path / 'demo'}",
        "experiment_name=t",
        "max_images=2",
    ]
    cfg = compose_eval([*overrides, "save_predictions=1"])
    metrics = run(cfg)
    assert set(metrics) == {"aAcc", "mIoU", "mAcc"}
    saved = sorted(p.name for p in (tmp_path / "results" / "t" / "predictions").glob("*/*"))
    assert [s.split("_", 2)[-1] for s in saved] == ["gt.png", "image.jpg", "labels.png"]  # demo_000_*
    folder = next((tmp_path / "results" / "t" / "predictions").iterdir())
    with Image.open(folder / saved[0]) as gt, Image.open(folder / saved[1]) as image:
        assert gt.size == image.size and max(image.size) <= DISPLAY_SIDE
    record = json.loads(next((tmp_path / "results" / "t").glob("*/metrics.json")).read_text())
    assert record["metric_definition"] == "mmseg_iou" and len(record["per_class"]["IoU"]) == 5
    caplog.clear()
    with caplog.at_level("INFO", logger="cliptrase.eval"):
        assert run(compose_eval([*overrides, "save_predictions=1"])) == metrics
    assert any("skip" in r.message for r in caplog.records)


@pytest.fixture
def tiny_weights(tmp_path, tiny_clip) -> Path:
    """A weights file of the random tiny CLIP: for tests of config and path errors, which need a model
    config that validates, not the golden weights."""
    import torch

    path = tmp_path / "tiny_random.pt"
    torch.save(tiny_clip.model.state_dict(), path)
    return path


def test_bad_inputs_are_one_line_errors(tmp_path, tiny_weights):
    base = ["model=weights_file", f"model.weights={tiny_weights}", f"paths.results_dir={tmp_path}"]
    with pytest.raises(Exception, match="Could not find 'method/nope'"):
        compose_eval([*base, "method=nope"])
    with pytest.raises(Exception, match="epsx"):
        compose_eval([*base, "method.epsx=0.5"])
    with pytest.raises(ValueError, match=r"method\.eps must be > 0"):
        run(compose_eval([*base, "method.eps=-1"]))
    missing = compose_eval([*base, "dataset=voc21", f"paths.data_root={tmp_path / 'nothing'}"])
    with pytest.raises((FileNotFoundError, ValueError), match="cliptrase data"):
        run(missing)


def test_unwritable_results_dir(tmp_path, tiny_weights):
    base = ["model=weights_file", f"model.weights={tiny_weights}"]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.access(ro, os.W_OK):
        pytest.skip("running as root: cannot make a read-only directory")
    with pytest.raises(PermissionError, match="not writable"):
        run(compose_eval([*base, f"paths.results_dir={ro}"]))


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cliptrase.eval", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=900,
    )


def test_multirun_table_and_resume(tmp_path, tiny_clip):
    """2 models x 2 datasets x 2 eps = one 8-cell table; after losing 5 results only those 5 re-run."""
    import torch

    weights_a = golden_weights()
    weights_b = tmp_path / "tiny_random.pt"
    torch.save(tiny_clip.model.state_dict(), weights_b)
    demo = tmp_path / "demo"
    voc = tmp_path / "data" / "VOCdevkit" / "VOC2012"
    from cliptrase.datasets.demo import ensure_demo_dataset

    ensure_demo_dataset(demo)
    voc.parent.mkdir(parents=True)
    os.symlink(demo, voc)
    env = {**os.environ, "CLIPTRASE_DATA": str(tmp_path / "data"), "CLIPTRASE_RESULTS": str(tmp_path / "res")}
    args = [
        "-m",
        "model=weights_file",
        f"model.weights={weights_a},{weights_b}",
        "dataset=demo,voc20",
        f"+dataset.data_root={demo}",
        "method.eps=0.6,0.8",
        "experiment_name=sweep",
        "max_images=2",
        "hydra/job_logging=disabled",
    ]
    args = [a for a in args if not a.startswith("+dataset.data_root")]  # demo finds its cache via env
    env["CLIPTRASE_CACHE"] = str(tmp_path / "cache")
    first = _cli(args, env)
    assert first.returncode == 0, first.stderr[-3000:]
    records = sorted((tmp_path / "res" / "sweep").glob("*/metrics.json"))
    assert len(records) == 8
    for path in records[:5]:
        path.unlink()
    kept = {p: p.stat().st_mtime_ns for p in records[5:]}
    second = _cli(args, env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(list((tmp_path / "res" / "sweep").glob("*/metrics.json"))) == 8
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the 3 finished runs were skipped
    table = subprocess.run(
        [sys.executable, "-m", "cliptrase.cli.table", str(tmp_path / "res" / "sweep")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert table.returncode == 0, table.stderr
    md = (tmp_path / "res" / "sweep" / "table.md").read_text()
    body = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(body) == 4, md  # 2 models x 2 eps rows, each with demo + voc20 cells
    assert all(line.count("|") >= 5 for line in body)


def test_every_method_both_protocols_one_multirun(tmp_path):
    """Every method x {paper, standard} on the demo dataset in one multirun (ProxyCLIP in a second one, with a
    tiny DINO checkpoint in DINO's format: its proxy model needs weights); the tables render them all."""
    from helpers.proxyclip_data import TINY_DINO, write_tiny_dino

    weights = golden_weights()
    methods = sorted(p.stem for p in (Path(CONFIG_DIR) / "method").glob("*.yaml") if "_" not in p.stem)
    with_vfm = ["proxyclip"]
    env = {
        **os.environ,
        "CLIPTRASE_RESULTS": str(tmp_path / "res"),
        "CLIPTRASE_CACHE": str(tmp_path / "cache"),
    }
    common = [
        "-m",
        "model=weights_file",
        f"model.weights={weights}",
        "dataset=demo",
        "protocol=paper224,standard",
        "experiment_name=all",
        "max_images=1",
        "hydra/job_logging=disabled",
    ]
    plain = [m for m in methods if m not in with_vfm]
    proc = _cli([*common, f"method={','.join(plain)}"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dino = write_tiny_dino(tmp_path / "tiny_dino_vit8.pth")
    vfm = [f"method.params.vfm_weights={dino}", *(f"method.params.vfm_{k}={v}" for k, v in TINY_DINO.items())]
    proc = _cli([*common, f"method={','.join(with_vfm)}", *vfm], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list((tmp_path / "res" / "all").glob("*/metrics.json"))
    assert len(records) == 2 * len(methods) >= 18
    tables = sorted(p.name for p in (tmp_path / "res" / "all").glob("table_*.md"))
    assert tables == ["table_mmseg_iou.md", "table_paper_scores.md"]  # never mixed in one table
    for name in tables:
        text = (tmp_path / "res" / "all" / name).read_text()
        assert all(f"| {m} \\|" in text for m in methods), text


@pytest.mark.parametrize("protocol", ["standard", "paper224"])
def test_batch_of_two_equals_batch_of_one(tmp_path, protocol):
    weights = golden_weights()
    base = [
        "dataset=demo",
        f"protocol={protocol}",
        "model=weights_file",
        f"model.weights={weights}",
        f"+dataset.data_root={tmp_path / 'demo'}",
        "max_images=3",
        "results.resume=false",
    ]
    one = run(compose_eval([*base, "batch_size=1", f"paths.results_dir={tmp_path / 'r1'}"]))
    two = run(compose_eval([*base, "batch_size=2", "window_batch=5", f"paths.results_dir={tmp_path / 'r2'}"]))
    assert one == two


def test_torchrun_two_gloo_processes_equal_one(tmp_path):
    """Data-parallel under torchrun (2 CPU processes, gloo) gives the metrics of 1 process."""
    import socket

    weights = golden_weights()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CLIPTRASE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    common = [
        "model=weights_file",
        f"model.weights={weights}",
        "dataset=demo",
        "max_images=3",
        "hydra/job_logging=disabled",
        "device=cpu",
    ]
    torchrun = ["-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
    for name, launcher in (("one", []), ("two", torchrun)):
        proc = subprocess.run(
            [
                sys.executable,
                *launcher,
                "-m",
                "cliptrase.eval",
                *common,
                f"paths.results_dir={tmp_path}/{name}",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    rec = [
        json.loads(next((tmp_path / d / "default").glob("*/metrics.json")).read_text())
        for d in ("one", "two")
    ]
    assert rec[0]["metrics"] == rec[1]["metrics"]
    assert len(list((tmp_path / "two" / "default").glob("*/metrics.json"))) == 1  # written once, by rank 0
