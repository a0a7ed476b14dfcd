"""The one harness cell: compose -> validate -> seed -> timed evaluate, shared by every harness tool."""

from __future__ import annotations

from collections.abc import Sequence

from .common import SYNTH_HW


def cell_overrides(
    *,
    dataset: str,
    protocol: str,
    backbone: str,
    data_root: str,
    work: str,
    images: int,
    device: str,
    workers: int,
    precision: str = "fp32",
    batch_size: int = 1,
    window_batch: int = 16,
    method: str | None = None,
) -> list[str]:
    """The ``cliptrase-eval`` overrides of a cell: random weights of ``backbone``, synthetic data
    (``method``: a ``configs/method`` name, else the composed default)."""
    slug = "random_" + backbone.lower().replace("-", "_")
    return [
        "model=random_vit_b16",
        f"model.name={backbone}",
        f"model.slug={slug}",
        f"dataset={dataset}",
        f"dataset.data_root={data_root}",
        f"protocol={protocol}",
        f"precision={precision}",
        f"device={device}",
        f"max_images={images}",
        f"num_workers={workers}",
        f"batch_size={batch_size}",
        f"window_batch={window_batch}",
        f"paths.results_dir={work}",
        "experiment_name=bench",
        *([f"method={method}"] if method else []),
    ]


def bare_input_shape(cfg) -> tuple[int, tuple[int, int]]:
    """(encoder passes per image, (batch, side)) of the bare-encoder baseline for ``cfg``'s protocol on
    :data:`~.common.SYNTH_HW` images."""
    import mmcv

    from cliptrase.inference.sliding import window_boxes

    if cfg.protocol.kind == "paper":
        return 1, (int(cfg.batch_size), int(cfg.protocol.image_size))
    short = cfg.protocol.short_side_by_dataset.get(cfg.dataset.name, cfg.protocol.short_side)
    w, h = mmcv.rescale_size(SYNTH_HW[::-1], (2048, short))
    crop, stride = int(cfg.protocol.crop), int(cfg.protocol.stride)
    n_windows = len(window_boxes((h, w), (crop, crop), (stride, stride))) * int(cfg.batch_size)
    window_batch = int(cfg.window_batch)
    if n_windows <= window_batch:
        return 1, (n_windows, crop)
    return -(-n_windows // window_batch), (window_batch, crop)  # whole batches (an upper bound)


def harness_cell(overrides: Sequence[str], hooks_for=lambda cfg, timer: [], name: str = "bench"):
    """Compose ``overrides`` as ``cliptrase-eval`` would, validate, seed, and run the test loop with a
    :class:`~cliptrase.utils.profiling.StageTimer` active.

    Args:
        overrides: the job's overrides (:func:`cell_overrides`).
        hooks_for: ``(cfg, timer) -> hooks`` built once the config is composed (they may need its
            shapes, e.g. the bare-encoder baseline).
        name: the run name.

    Returns:
        (cfg, timer, hooks).
    """
    from cliptrase.config import validate
    from cliptrase.harness.compose import compose_job
    from cliptrase.harness.evaluate import evaluate
    from cliptrase.harness.runtime import seed_everything
    from cliptrase.utils.profiling import StageTimer

    cfg = compose_job(list(overrides))
    groups = validate(cfg)
    seed_everything(cfg.seed)  # as cliptrase-eval: the same random weights in every cell (text cache hits)
    timer = StageTimer()
    hooks = list(hooks_for(cfg, timer))
    with timer.activate():
        evaluate(cfg, groups, name, hooks=hooks)
    return cfg, timer, hooks
