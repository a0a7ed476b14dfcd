"""``cliptrase-eval`` (also ``python -m cliptrase.eval``): the Hydra evaluation app.

One job = one (model, dataset, protocol, method). It validates the config, skips the job when a complete
result with the same config hash exists (resume), evaluates it and writes ``metrics.json`` +
``per_class.csv`` with provenance under ``results/<experiment>/<run>/`` (:mod:`cliptrase.harness`), then
rebuilds the experiment's table. ``-m`` sweeps any group or value. A user error (bad config value, missing
data or weights) is one log line and exit status 2 (:mod:`cliptrase.errors`); ``CLIPTRASE_DEBUG=1`` or
``HYDRA_FULL_ERROR=1`` shows the traceback.

    cliptrase-eval experiment=demo
    cliptrase-eval -m model=vit_b16_openai,vit_l14_openai dataset=voc21,context59 method.eps=0.5,0.7
"""

from __future__ import annotations

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from cliptrase.config import register_configs
from cliptrase.datasets.config import config_dir
from cliptrase.errors import error_boundary
from cliptrase.harness.compose import EVAL_CONFIG
from cliptrase.harness.run import experiment_dir_of, run
from cliptrase.harness.runtime import is_main_process
from cliptrase.harness.tables import write_tables


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=EVAL_CONFIG)
def _hydra_main(cfg: DictConfig) -> float | None:
    torch.set_grad_enabled(False)
    # Caught here, inside the task: past this function Hydra prints its own traceback. In a multirun the
    # error goes on to the launcher after its one line, so the other jobs still run.
    with error_boundary(propagate=HydraConfig.get().mode == RunMode.MULTIRUN):
        metrics = run(cfg)
        if is_main_process():
            write_tables(experiment_dir_of(cfg))
    return None if metrics is None else metrics.get("mIoU")


def main() -> None:
    """Console-script entry point."""
    register_configs()
    _hydra_main()
