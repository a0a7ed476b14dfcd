"""``cliptrase-eval`` (also ``python -m cliptrase.eval``): the Hydra evaluation app.

One job = one (model, dataset, protocol, method). It validates the config, skips the job when a complete
result with the same config hash exists (resume), evaluates it and writes ``metrics.json`` +
``per_class.csv`` with provenance under ``results/<experiment>/<run>/`` (:mod:`cliptrase.harness`), then
rebuilds the experiment's table. ``-m`` sweeps any group or value. A user error (bad config value, missing
data or weights) is one log line and exit status 2 (:mod:`cliptrase.errors`); ``CLIPTRASE_DEBUG=1`` or
``HYDRA_FULL_ERROR=1`` shows the traceback. In a ``-m`` sweep a failing cell is recorded (``failed.json``,
shown as ``failed`` in the table) and the others run; the sweep ends with the list of failed cells and exit
status 1 (:mod:`cliptrase.harness.sweep`). Ctrl-C or SIGTERM ends the run with one line and status 130; no
record is half-written, and the same command resumes.

    cliptrase-eval experiment=demo
    cliptrase-eval -m model=vit_b16_openai,vit_l14_openai dataset=voc21,context59 method.eps=0.5,0.7
"""

from __future__ import annotations

import logging
import sys

import hydra
import torch
from omegaconf import DictConfig

from cliptrase.config import register_configs
from cliptrase.errors import USER_ERRORS, ExitCode, error_boundary, message_of, sigterm_as_interrupt
from cliptrase.harness.compose import EVAL_CONFIG
from cliptrase.harness.identity import experiment_dir_of
from cliptrase.harness.preflight import check_command_line
from cliptrase.harness.runtime import is_main_process
from cliptrase.harness.sweep import FAILED_CELLS, in_multirun, run_job
from cliptrase.paths import config_dir
from cliptrase.reporting.table_files import write_tables

logger = logging.getLogger("cliptrase.eval")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=EVAL_CONFIG)
def _hydra_main(cfg: DictConfig) -> float | None:
    torch.set_grad_enabled(False)
    # Caught here, inside the task: past this function Hydra prints its own traceback. In a multirun
    # run_job records a failing cell and returns, so only an interrupt reaches the boundary there.
    with error_boundary():
        metrics = run_job(cfg)
        if is_main_process():
            _write_tables(cfg)
    return None if metrics is None else metrics.get("mIoU")


def _write_tables(cfg: DictConfig) -> None:
    """Rebuild the experiment's tables; in a sweep a failure to do so does not stop the other cells."""
    try:
        write_tables(experiment_dir_of(cfg))
    except USER_ERRORS as err:
        if not in_multirun():
            raise
        logger.error("tables not rewritten: %s", message_of(err))


def main() -> None:
    """Console-script entry point."""
    register_configs()
    sigterm_as_interrupt()  # a scheduler's cancel ends the job like Ctrl-C: one line, no half-written record
    # What Hydra would fail on while setting the run up (a config it cannot find, an output folder below a
    # file) is reported here, in one line, before hydra.main reports it its own way.
    with error_boundary():
        check_command_line(sys.argv[1:], config_dir=config_dir(), config_name=EVAL_CONFIG)
    _hydra_main()
    if FAILED_CELLS:
        sys.exit(ExitCode.INCOMPLETE)
