"""``cliptrase-eval`` (also ``python -m cliptrase.eval``): the Hydra evaluation app.

One job = one (model, dataset, protocol, method). It validates the config, skips the job when a complete
result with the same config hash exists (resume), builds the dataset and the registered segmentor, runs
mmengine's test loop with the protocol's metric, and writes ``metrics.json`` + ``per_class.csv`` with
provenance under ``results/<experiment>/<run>/``. ``-m`` sweeps any group or value; after a multirun the
experiment's table is rebuilt.

    cliptrase-eval experiment=demo
    cliptrase-eval -m model=vit_b16_openai,vit_l14_openai dataset=voc21,context59 method.eps=0.5,0.7
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cliptrase.config import register_configs, validate
from cliptrase.utils.fs import ensure_writable

if TYPE_CHECKING:
    from mmengine.hooks import Hook


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or the only process."""
    from mmengine.dist import get_rank

    return get_rank() == 0


logger = logging.getLogger("cliptrase.eval")

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
HASH_EXCLUDE = (
    "paths",
    "hydra",
    "results",
    "save_predictions",
    "num_workers",
    "device",
    "experiment_name",
    "window_batch",
    "batch_size",
    "threads",
)
"""Keys that do not change the numbers and therefore not the config hash."""


def vocabulary(dataset_cfg: Any, protocol_cfg: Any) -> dict[str, Any]:
    """Prompts, prompt -> class map and background handling of a dataset under a protocol."""
    from cliptrase.protocols.paper import paper_dataset

    if protocol_cfg.vocab == "paper" and dataset_cfg.paper_key:
        ds = paper_dataset(dataset_cfg.paper_key)
        n_fg = ds.n_foreground
        return {
            "prompts": ds.prompts,
            "prompt_to_class": [min(i, n_fg) for i in range(len(ds.prompts))],
            "n_classes": ds.n_class_scored,
            "n_foreground": n_fg if ds.has_background else None,
            "cls_product": ds.cls_product,
            "class_names": list(ds.class_names) + (["background"] if ds.has_background else []),
        }
    from cliptrase.datasets.vocab import load_vocabulary

    voc = load_vocabulary(OmegaConf.to_container(OmegaConf.structured(dataset_cfg)), protocol_cfg.vocab)
    lines = voc.synonyms or [[n] for n in voc.class_names]
    names = list(voc.class_names)
    if voc.background_names:  # label 0 is background: all its words are one class (protocols.md §1d)
        lines, names = [list(voc.background_names), *lines], ["background", *names]
    prompts = [p for line in lines for p in line]
    return {
        "prompts": prompts,
        "prompt_to_class": [c for c, line in enumerate(lines) for _ in line],
        "n_classes": len(lines),
        "n_foreground": None,
        "cls_product": False,
        "class_names": names,
    }


def pipeline(dataset_cfg: Any, protocol_cfg: Any, n_foreground: int | None) -> tuple[list[dict], dict]:
    """The protocol's loading pipeline and the dataset-constructor overrides it needs."""
    from cliptrase.protocols.paper import PAPER_GT

    load = [dict(type="LoadImageFromFile", imdecode_backend="pillow"), dict(type="LoadAnnotationsU16")]
    meta = ("img_path", "seg_map_path", "ori_shape", "img_shape", "reduce_zero_label")
    if protocol_cfg.kind == "paper":
        rule, suffix = PAPER_GT.get(dataset_cfg.paper_key, ("identity", None))
        overrides: dict[str, Any] = {}
        if dataset_cfg.paper_key:
            overrides["reduce_zero_label"] = False  # the rule maps raw labels to the authors' encoding
        if suffix:
            overrides["seg_map_suffix"] = suffix
        steps = [
            *load,
            dict(type="PaperResizeCrop", size=protocol_cfg.image_size, rule=rule, background=n_foreground),
        ]
        return [*steps, dict(type="PackSegInputs", meta_keys=(*meta, "paper_scored"))], overrides
    short = protocol_cfg.short_side_by_dataset.get(dataset_cfg.name, protocol_cfg.short_side)
    resize = dict(type="Resize", scale=(2048, short), keep_ratio=True)
    steps = [load[0], resize, load[1], dict(type="PackSegInputs", meta_keys=(*meta, "scale_factor"))]
    return steps, {}


def config_hash_of(cfg: DictConfig) -> str:
    """Hash of everything that changes the numbers."""
    from cliptrase.evaluation.results import config_hash

    container = OmegaConf.to_container(cfg, resolve=True)
    container["dataset"].pop("data_root", None)
    return config_hash(container, exclude=HASH_EXCLUDE)


def row_label(cfg: DictConfig) -> str:
    """Table row: method | model | protocol, plus the method overrides of this job (ablations)."""
    model = cfg.model.slug if not cfg.model.weights else f"{cfg.model.slug}:{Path(cfg.model.weights).stem}"
    label = f"{cfg.method.name} | {model} | {cfg.protocol.name}"
    try:
        overrides = [o for o in HydraConfig.get().overrides.task if o.startswith("method.")]
    except ValueError:  # not running under Hydra (tests calling run() directly)
        overrides = []
    return label + (
        " | " + ",".join(o.removeprefix("method.") for o in sorted(overrides)) if overrides else ""
    )


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (libraries draw from numpy's global RNG)
    torch.manual_seed(seed)


def run(cfg: DictConfig) -> dict | None:
    """Evaluate one configuration; returns the metrics (None when skipped as already complete)."""
    from cliptrase.evaluation.results import ResultRecord, collect_provenance, find_complete, write_record

    groups = validate(cfg)
    seed_everything(cfg.seed)  # before the model is built: random-weight models are reproducible
    ds_cfg, proto_cfg, method_cfg = groups["dataset"], groups["protocol"], groups["method"]
    experiment_dir = Path(cfg.paths.results_dir) / cfg.experiment_name
    digest = config_hash_of(cfg)
    run_name = f"{ds_cfg.name}__{cfg.model.slug}__{method_cfg.name}__{proto_cfg.name}__{digest[:8]}"
    if cfg.results.resume and not cfg.results.overwrite:
        done = find_complete(experiment_dir, digest)
        if done is not None:
            logger.info("skip %s: complete result with config hash %s exists", run_name, digest)
            return done.metrics
    out_dir = experiment_dir / run_name
    ensure_writable(out_dir, "results directory", "set paths.results_dir=<writable dir>")
    logger.info("run %s (config hash %s) -> %s", run_name, digest, out_dir)
    logger.debug("resolved config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    metrics, per_class, n_images, device = evaluate(cfg, groups, run_name)
    record = ResultRecord(
        experiment=cfg.experiment_name,
        run=run_name,
        row=row_label(cfg),
        column=ds_cfg.name,
        metric_definition=proto_cfg.metric,
        metrics=metrics,
        class_names=per_class["class_names"],
        per_class={k: v for k, v in per_class.items() if k != "class_names"},
        config=OmegaConf.to_container(cfg, resolve=True),
        config_hash=digest,
        provenance=collect_provenance(
            device=device, n_images=n_images, wall_time_s=time.perf_counter() - t0, started_at=started
        ),
    )
    if not is_main_process():  # under torchrun every rank has the gathered metrics; rank 0 writes them
        return metrics
    path = write_record(record, out_dir, overwrite=bool(cfg.results.overwrite))
    logger.info("%s: %s -> %s", run_name, {k: v for k, v in metrics.items()}, path)
    return metrics


def evaluate(
    cfg: DictConfig, groups: dict, run_name: str = "run", hooks: Sequence[Hook] = ()
) -> tuple[dict, dict, int, str]:
    """Build dataset, segmentor and metric; run mmengine's test loop (with ``hooks`` added to it).

    Returns:
        Summary metrics, per-class lists, number of images, device name.
    """
    from mmengine.registry import DefaultScope

    # Names in pipelines and configs resolve in cliptrase's registries (children of mmseg's).
    with DefaultScope.overwrite_default_scope("cliptrase"):
        return _evaluate(cfg, groups, run_name, hooks)


def _evaluate(
    cfg: DictConfig, groups: dict, run_name: str, extra_hooks: Sequence[Hook]
) -> tuple[dict, dict, int, str]:
    from mmengine.runner import Runner

    from cliptrase.datasets.config import build_dataset
    from cliptrase.evaluation.progress import ProgressHook
    from cliptrase.evaluation.visualize import SavePredictionsHook
    from cliptrase.registry import MODELS
    from cliptrase.utils.device import resolve_device

    ds_cfg, proto_cfg = groups["dataset"], groups["protocol"]
    voc = vocabulary(ds_cfg, proto_cfg)
    steps, overrides = pipeline(ds_cfg, proto_cfg, voc["n_foreground"] if proto_cfg.kind == "paper" else None)
    if cfg.max_images:
        overrides["indices"] = int(cfg.max_images)
    for key in ("img_suffix", "seg_map_suffix"):
        if getattr(ds_cfg, key):
            overrides[key] = getattr(ds_cfg, key)
    dataset = build_dataset(OmegaConf.to_container(cfg.dataset, resolve=True), steps, **overrides)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        device = _init_distributed(device)
    segmentor = MODELS.build(
        dict(
            type="CLIPtraseSegmentor",
            model=OmegaConf.to_container(cfg.model),
            method=OmegaConf.to_container(cfg.method),
            protocol=OmegaConf.to_container(cfg.protocol),
            prompts=voc["prompts"],
            prompt_to_class=voc["prompt_to_class"],
            n_classes=voc["n_classes"],
            n_foreground=voc["n_foreground"],
            cls_product=voc["cls_product"],
            dataset_name=ds_cfg.name,
            device=str(device),
            window_batch=cfg.window_batch,
            precision=cfg.precision,
            compile=bool(cfg.compile),
        )
    )
    if proto_cfg.metric == "paper_scores":
        evaluator = dict(type="PaperMetric", num_classes=voc["n_classes"], class_names=voc["class_names"])
    else:
        evaluator = dict(type="IoUMetricPerClass", iou_metrics=["mIoU"], ignore_index=dataset.ignore_index)
    work_dir = (
        Path(HydraConfig.get().runtime.output_dir)
        if HydraConfig.initialized()
        else Path(cfg.paths.results_dir)
    )
    hooks = [ProgressHook(total=len(dataset), desc=f"{ds_cfg.name}/{proto_cfg.name}")]
    if cfg.save_predictions:
        out = Path(cfg.paths.results_dir) / cfg.experiment_name / "predictions" / run_name
        hooks.append(SavePredictionsHook(out, int(cfg.save_predictions), voc["class_names"]))
    hooks.extend(extra_hooks)
    runner = Runner(
        model=segmentor,
        work_dir=str(work_dir / "mmengine"),
        test_dataloader=dict(
            dataset=dataset,
            batch_size=cfg.batch_size,
            num_workers=cfg.num_workers,
            persistent_workers=False,
            prefetch_factor=4 if cfg.num_workers else None,
            pin_memory=device.type == "cuda",
            sampler=dict(type="DefaultSampler", shuffle=False),
            collate_fn=dict(type="pseudo_collate"),
        ),
        test_cfg=dict(type="TestLoop"),
        test_evaluator=evaluator,
        default_scope="cliptrase",
        custom_hooks=hooks,
        default_hooks=dict(logger=dict(type="LoggerHook", interval=50)),
        log_level="WARNING",
        randomness=dict(seed=cfg.seed),
    )
    summary, per_class = _split_metrics(runner.test(), voc["class_names"], proto_cfg.metric)
    return summary, per_class, len(dataset), str(device)


def _init_distributed(device: torch.device) -> torch.device:
    """Join the torchrun process group (gloo on CPU, nccl on GPU); return this rank's device.

    The group is created here rather than by mmengine's launcher, which assumes CUDA; mmengine's sampler
    and evaluator then shard the dataset and gather the results through it (no DDP wrapper is needed
    for inference).
    """
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def _split_metrics(metrics: dict, class_names: list[str], definition: str) -> tuple[dict, dict]:
    """Summary numbers and per-class lists from either metric."""
    if definition == "paper_scores":
        summary = {k: float(metrics[k]) for k in ("pAcc", "mAcc", "fwIoU", "mIoU")}
        per_class = {"class_names": class_names, "IoU": list(metrics["per_class_IoU"])}
        return summary, per_class
    summary = {k: float(metrics[k]) for k in ("aAcc", "mIoU", "mAcc")}
    return summary, {
        "class_names": class_names,
        "IoU": list(metrics["per_class_IoU"]),
        "Acc": list(metrics["per_class_Acc"]),
    }


def write_tables(experiment_dir: Path) -> None:
    """Rebuild the experiment's tables (``table.md``/``.csv``/``.png``) from its records and log them."""
    import argparse

    from cliptrase.cli import table

    table.run(argparse.Namespace(experiment_dir=experiment_dir, metric="mIoU", out=None, published=None))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def _hydra_main(cfg: DictConfig) -> float | None:
    torch.set_grad_enabled(False)
    metrics = run(cfg)
    if is_main_process():
        write_tables(Path(cfg.paths.results_dir) / cfg.experiment_name)
    return None if metrics is None else metrics.get("mIoU")


def main() -> None:
    """Console-script entry point."""
    register_configs()
    _hydra_main()
