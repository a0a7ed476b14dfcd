"""Process set-up of a job: seeding, the precision it runs in, and the torchrun process group for
data-parallel evaluation."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (libraries draw from numpy's global RNG)
    torch.manual_seed(seed)


def resolve_precision(cfg: Any) -> str:
    """The job's image-tower precision, written back into ``cfg.precision`` so that the record, the config
    hash and the row label carry it: an explicit ``precision`` as given; ``null`` is the protocol's
    ``published_precision`` on CUDA (the peers' released runs, e.g. fp16 through OpenAI's ``clip.load``) and
    fp32 elsewhere (their code runs fp32 on CPU too). Idempotent.
    """
    from cliptrase.utils.device import resolve_device

    if cfg.get("precision") is None:
        published = cfg.protocol.get("published_precision") or "fp32"
        cfg.precision = published if resolve_device(cfg.device).type == "cuda" else "fp32"
    return str(cfg.precision)


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or the only process."""
    from mmengine.dist import get_rank

    return get_rank() == 0


def world_size() -> int:
    """Number of torchrun processes (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> torch.device:
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
