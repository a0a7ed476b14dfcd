"""The evaluation harness: one Hydra-composed job -> dataset, segmentor, mmengine test loop -> result record.

The console scripts in :mod:`cliptrase.cli` only parse, call these functions and report; scripts, tests
and :mod:`cliptrase.reproduce` call them directly.

- :mod:`~cliptrase.harness.compose`: compose ``configs/eval.yaml`` with overrides outside ``cliptrase-eval``.
- :mod:`~cliptrase.harness.identity`: config hash, run name and table row of a job.
- :mod:`~cliptrase.harness.runtime`: seeding and the torchrun process group.
- :mod:`~cliptrase.harness.evaluate`: build dataset, segmentor and metric; run mmengine's test loop.
- :mod:`~cliptrase.harness.run`: one job end to end (resume, evaluate, write the record); ``run_safely``
  adds the config-hash lock and the ``failed.json`` of a failing job (sweep cells, ``cliptrase reproduce``).

A finished job's tables are written by :mod:`cliptrase.reporting.table_files`.
"""
