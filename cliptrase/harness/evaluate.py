"""One evaluation: dataset, registered segmentor and the protocol's metric in mmengine's test loop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cliptrase.engine.paper_metric import PAPER_METRIC
from cliptrase.harness.job import Job, resolve_job
from cliptrase.harness.runtime import init_distributed, resolve_precision, world_size
from cliptrase.protocols.pipeline import build_pipeline
from cliptrase.protocols.prompts import JobPrompts

if TYPE_CHECKING:
    from mmengine.hooks import Hook


class Evaluation(NamedTuple):
    """What one evaluation produced."""

    metrics: dict
    per_class: dict
    n_images: int
    device: str
    model: dict
    """The network as built (:meth:`cliptrase.models.clip.LoadedClip.describe`): activation, mean/std..."""


LOG_INTERVAL = 50  # mmengine LoggerHook interval (iterations)
PREFETCH_FACTOR = 4  # batches each loader worker prepares ahead


def evaluate(
    cfg: DictConfig, groups: Mapping[str, Any], job: Job | str = "run", hooks: Sequence[Hook] = ()
) -> Evaluation:
    """Build dataset, segmentor and metric; run mmengine's test loop (with ``hooks`` added to it).

    Args:
        cfg: the composed eval config.
        groups: the validated config groups (:func:`cliptrase.config.validate`).
        job: the resolved job (:func:`~cliptrase.harness.job.resolve_job`: identity, dataset facts), or a
            run name (scripts, tests: the job is resolved here under that name); it names the run folder of
            ``per_image.npz`` and the predictions folder (``save_predictions``).
        hooks: extra mmengine hooks (e.g. the stage timer of ``scripts/bench.py``).

    Returns:
        Summary metrics, per-class lists, number of images, device name, model description.
    """
    from mmengine.registry import DefaultScope

    # Names in pipelines and configs resolve in cliptrase's registries (children of mmseg's).
    if isinstance(job, str):
        job = resolve_job(cfg, groups=groups, run_name=job)
    with DefaultScope.overwrite_default_scope("cliptrase"):
        return _evaluate(cfg, job, hooks)


def _evaluate(cfg: DictConfig, job: Job, extra_hooks: Sequence[Hook]) -> Evaluation:
    from mmengine.runner import Runner

    from cliptrase.utils.device import resolve_device

    groups, prompts = job.groups, job.dataset.prompts
    proto_cfg = groups["protocol"]
    dataset = _build_dataset(cfg, job)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    if world_size() > 1:
        device = init_distributed(device)
    runner = Runner(
        model=_build_segmentor(cfg, groups, prompts, device),
        work_dir=str(_work_dir(cfg) / "mmengine"),
        test_dataloader=_dataloader(cfg, dataset, device),
        test_cfg=dict(type="TestLoop"),
        test_evaluator=_evaluator(proto_cfg.metric, prompts, dataset.ignore_index),
        default_scope="cliptrase",
        custom_hooks=[
            *_hooks(cfg, job, len(dataset)),
            *extra_hooks,
        ],
        default_hooks=dict(logger=dict(type="LoggerHook", interval=LOG_INTERVAL)),
        log_level="WARNING",
        randomness=dict(seed=cfg.seed),
    )
    summary, per_class = split_metrics(runner.test(), prompts.class_names, proto_cfg.metric)
    segmentor = getattr(runner.model, "module", runner.model)  # DDP-wrapped under torchrun
    return Evaluation(summary, per_class, len(dataset), str(device), dict(segmentor.model_info))


def _build_dataset(cfg: DictConfig, job: Job) -> Any:
    """The dataset with the protocol's pipeline (label values checked), ``max_images`` and the suffixes."""
    from cliptrase.datasets.build import build_dataset
    from cliptrase.datasets.label_check import with_label_check

    ds_cfg, proto_cfg, facts = job.groups["dataset"], job.groups["protocol"], job.dataset
    background = facts.prompts.n_foreground if proto_cfg.kind == "paper" else None
    steps, overrides = build_pipeline(ds_cfg, proto_cfg, background)
    allow = bool(cfg.get("allow_invalid_labels", False))
    steps = with_label_check(steps, facts.dataset_class, dataset=facts.name, allow=allow)
    if cfg.max_images:
        overrides["indices"] = int(cfg.max_images)
    for key in ("img_suffix", "seg_map_suffix"):
        if getattr(ds_cfg, key):
            overrides[key] = getattr(ds_cfg, key)
    container = OmegaConf.to_container(cfg.dataset, resolve=True)
    return build_dataset(container, steps, dataset_class=facts.dataset_class, **overrides)


def _build_segmentor(
    cfg: DictConfig, groups: Mapping[str, Any], prompts: JobPrompts, device: torch.device
) -> Any:
    """The registered segmentor, given the validated method and protocol (it resolves nothing itself)."""
    from cliptrase.registry import MODELS

    return MODELS.build(
        dict(
            type="CLIPtraseSegmentor",
            model=OmegaConf.to_container(cfg.model),
            method=groups["method"],
            protocol=groups["protocol"],
            prompts=prompts.prompts,
            prompt_to_class=prompts.prompt_to_class,
            n_classes=prompts.n_classes,
            n_foreground=prompts.n_foreground,
            cls_product=prompts.cls_product,
            dataset_name=groups["dataset"].name,
            device=str(device),
            window_batch=cfg.window_batch,
            precision=resolve_precision(cfg),
            compile=bool(cfg.compile),
        )
    )


def _evaluator(metric: str, prompts: JobPrompts, ignore_index: int) -> dict:
    if metric == PAPER_METRIC:
        return dict(type="PaperMetric", num_classes=prompts.n_classes, class_names=prompts.class_names)
    return dict(type="IoUMetricPerClass", iou_metrics=["mIoU"], ignore_index=ignore_index)


def _dataloader(cfg: DictConfig, dataset: Any, device: torch.device) -> dict:
    return dict(
        dataset=dataset,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        persistent_workers=False,
        prefetch_factor=PREFETCH_FACTOR if cfg.num_workers else None,
        pin_memory=device.type == "cuda",
        sampler=dict(type="DefaultSampler", shuffle=False),
        collate_fn=dict(type="pseudo_collate"),
    )


def _work_dir(cfg: DictConfig) -> Path:
    """Hydra's run folder under ``cliptrase-eval``; the results folder when called directly."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.results_dir)


def _hooks(cfg: DictConfig, job: Job, n_images: int) -> list[Hook]:
    """Progress logging, the per-image records (``per_image.npz``), plus the prediction writer when
    ``save_predictions`` asks for it."""
    from cliptrase.engine.metrics import SavePerImageHook
    from cliptrase.engine.predictions import SavePredictionsHook
    from cliptrase.engine.progress import ProgressHook

    identity, protocol = job.identity, job.groups["protocol"].name
    hooks: list[Hook] = [
        ProgressHook(total=n_images, desc=f"{job.dataset.name}/{protocol}"),
        SavePerImageHook(identity.run_dir, identity.config_hash),
    ]
    if cfg.save_predictions:
        out = identity.experiment_dir / "predictions" / identity.run_name
        hooks.append(SavePredictionsHook(out, int(cfg.save_predictions), job.dataset.prompts.class_names))
    return hooks


def split_metrics(metrics: dict, class_names: list[str], definition: str) -> tuple[dict, dict]:
    """Summary numbers and per-class lists from either metric."""
    if definition == PAPER_METRIC:
        summary = {k: float(metrics[k]) for k in ("pAcc", "mAcc", "fwIoU", "mIoU")}
        per_class = {"class_names": class_names, "IoU": list(metrics["per_class_IoU"])}
        return summary, per_class
    summary = {k: float(metrics[k]) for k in ("aAcc", "mIoU", "mAcc")}
    return summary, {
        "class_names": class_names,
        "IoU": list(metrics["per_class_IoU"]),
        "Acc": list(metrics["per_class_Acc"]),
    }
