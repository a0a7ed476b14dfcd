"""Every config option composes and validates; experiment files reference existing options."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers.config import compose_eval

from cliptrase.config import validate
from cliptrase.paths import config_dir

CONFIG_DIR = str(config_dir())

GROUPS = ("model", "method", "protocol", "dataset")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    return compose_eval([*overrides, "paths.results_dir=/unused", "paths.data_root=/unused"])


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes_and_validates(group, option):
    extra = ["model.weights=/some/file.pt"] if option == "weights_file" else []
    groups = validate(_compose([f"{group}={option}", *extra]))
    if group in ("method", "protocol", "dataset"):
        assert groups[group].name == option  # config file stem = name in results and tables
    if group == "model":
        assert groups["model"].slug == option


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiments_reference_existing_options(experiment):
    cfg = _compose([f"experiment={experiment}"])
    assert cfg.experiment_name == experiment
    text = yaml.safe_load((Path(CONFIG_DIR) / "experiment" / f"{experiment}.yaml").read_text())
    params = (text.get("hydra") or {}).get("sweeper", {}).get("params", {})
    for key, values in params.items():
        if key in GROUPS:
            for value in str(values).split(","):
                assert value.strip() in _options(key), f"{experiment}: {key}={value} does not exist"


def test_model_configs_name_real_open_clip_models():
    import open_clip

    for option in _options("model"):
        cfg = yaml.safe_load((Path(CONFIG_DIR) / "model" / f"{option}.yaml").read_text())
        if cfg.get("name"):
            assert cfg["name"] in open_clip.list_models(), option
        if cfg.get("pretrained") not in (None, "random"):
            assert cfg["pretrained"] in open_clip.list_pretrained_tags_by_model(cfg["name"]), option


@pytest.mark.parametrize(
    ("dataset", "n_classes", "n_background_prompts"),
    [("voc21", 21, 26), ("context60", 60, 1), ("coco_object", 81, 26), ("voc20", 20, 0), ("ade150", 150, 0)],
)
def test_standard_vocabulary_label_space(dataset, n_classes, n_background_prompts):
    """Standard protocol: background words form class 0 where the dataset has a background label."""
    from cliptrase.protocols.prompts import job_prompts

    groups = validate(_compose([f"dataset={dataset}", "protocol=standard"]))
    voc = job_prompts(groups["dataset"], groups["protocol"])
    assert voc.n_classes == n_classes == len(voc.class_names)
    assert max(voc.prompt_to_class) == n_classes - 1
    assert voc.prompt_to_class.count(0) >= max(n_background_prompts, 1)
    if n_background_prompts:
        assert voc.class_names[0] == "background"
        assert voc.prompt_to_class[:n_background_prompts] == [0] * n_background_prompts


@pytest.mark.parametrize(("dataset", "n_classes"), [("voc21", 21), ("voc20", 20), ("coco_object", 81)])
def test_paper_vocabulary_label_space(dataset, n_classes):
    from cliptrase.protocols.prompts import job_prompts

    groups = validate(_compose([f"dataset={dataset}", "protocol=paper224"]))
    voc = job_prompts(groups["dataset"], groups["protocol"])
    assert voc.n_classes == n_classes == len(voc.class_names)
    assert max(voc.prompt_to_class) == n_classes - 1


def test_slurm_launcher_config_composes():
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed (optional)"
    )
    cfg = compose_eval(["hydra/launcher=slurm", "paths.results_dir=/x"], return_hydra_config=True)
    assert cfg.hydra.launcher.gpus_per_node == 1
