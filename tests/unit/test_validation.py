"""Every knob and every dataset config validated at compose time, before a model or a file is touched.

In-process for the many ranges and choices (fast); the subprocess tests show the same refusals reach a user
as one line naming the key, with no model loaded (the weights path does not even exist).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.config import compose_eval

from cliptrase.config import ConfigError, validate
from cliptrase.datasets.config_files import list_dataset_configs

BASE = ["model=weights_file", "model.weights=/nonexistent/weights.pt"]


def composed(overrides: list[str]):
    return compose_eval([*BASE, *overrides])


@pytest.mark.parametrize(
    ("override", "key", "valid"),
    [
        ("max_images=0", "max_images", "an integer >= 1 or null"),
        ("max_images=-2", "max_images", "an integer >= 1 or null"),
        ("max_images=two", "max_images", "an integer >= 1 or null"),
        ("batch_size=0", "batch_size", "an integer >= 1"),
        ("window_batch=-1", "window_batch", "an integer >= 1"),
        ("threads=0", "threads", "an integer >= 1 or null"),
        ("num_workers=-1", "num_workers", "an integer >= 0"),
        ("save_predictions=-1", "save_predictions", "an integer >= 0"),
        ("seed=-3", "seed", "an integer >= 0"),
        ("device=gpu", "device", "auto, cpu, cuda, cuda:<index>"),
        ("device=cuda:x", "device", "auto, cpu, cuda, cuda:<index>"),
        ("precision=fp8", "precision", "fp32, bf16, fp16"),
        ("compile=maybe", "compile", "true, false"),
        ("allow_invalid_labels=1", "allow_invalid_labels", "true, false"),
        ("results.resume=2", "results.resume", "true, false"),
        ("+results.overwrit=true", "results.overwrit", "keys resume, overwrite"),
        ("experiment_name=a/b", "experiment_name", "a folder name"),
        ("method.vote=mode", "method.vote", "null, majority, mean_logits"),
        ("method.dbscan=cuml", "method.dbscan", "torch, sklearn"),
        ("method.correlation=cos", "method.correlation", "qkv_cosine, attention"),
        ("method.attention=nope", "method.attention", "cliptrase"),
        ("method.min_samples=0", "method.min_samples", "an integer >= 1 or null"),
        ("method.median_size=4", "method.median_size", "an odd integer >= 1"),
        ("method.median_size=0", "method.median_size", "an odd integer >= 1"),
        ("method.upsample_ratio=0", "method.upsample_ratio", "an integer >= 1"),
        ("method.eps=-1", "method.eps", "a number > 0 or null"),
        ("method.eps=0", "method.eps", "a number > 0 or null"),
        ("protocol.logit_scale=0", "protocol.logit_scale", "a number > 0"),
        ("protocol.vocab=mine", "protocol.vocab", "paper, standard"),
        ("protocol.metric=acc", "protocol.metric", "paper_scores, mmseg_iou"),
        ("+max_imgs=3", "max_imgs", "max_images"),
    ],
)
def test_knob_refused_naming_key_and_valid_values(override, key, valid):
    with pytest.raises(ConfigError) as err:
        validate(composed([override]))
    message = str(err.value)
    assert key in message and valid in message, message
    assert "\n" not in message


def test_standard_protocol_ranges_are_checked_per_dataset():
    with pytest.raises(ConfigError, match=r"protocol\.crop/stride"):
        validate(composed(["protocol=standard", "protocol.stride=0"]))
    with pytest.raises(ConfigError, match=r"protocol\.prob_thd"):
        validate(composed(["protocol=standard", "dataset=voc21", "protocol.prob_thd_by_dataset.voc21=2"]))


@pytest.mark.parametrize("name", list_dataset_configs())
@pytest.mark.parametrize("protocol", ["paper224", "standard"])
def test_every_shipped_dataset_config_validates(name, protocol):
    validate(composed([f"dataset={name}", f"protocol={protocol}"]))


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("dataset.paper_key=VOC21", "paper vocabulary of 'voc20' has 20 classes (background: True)"),
        ("dataset.standard_vocab=voc21", "standard vocabulary of 'voc20' has 21 classes"),
        ("dataset.paper_key=VOC99", "dataset.paper_key in configs/dataset/voc20.yaml"),
        ("dataset.num_classes=2", "configs/dataset/voc20.yaml says num_classes=2"),
        ("dataset.has_background=true", "has_background=True, but VOC20Dataset"),
        ("dataset.type=Toy", "unknown dataset 'Toy'"),
    ],
)
def test_dataset_config_must_agree_with_class_and_vocabularies(override, named):
    with pytest.raises(ConfigError) as err:
        validate(composed(["dataset=voc20", override]))
    assert named in str(err.value)


def test_valid_knobs_pass(tmp_path: Path):
    validate(
        composed(
            [
                "max_images=1",
                "batch_size=2",
                "window_batch=5",
                "threads=1",
                "num_workers=0",
                "device=cuda:1",
                "precision=bf16",
                "allow_invalid_labels=true",
                f"paths.results_dir={tmp_path}",
            ]
        )
    )
