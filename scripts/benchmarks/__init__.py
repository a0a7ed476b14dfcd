"""The tools of ``scripts/bench.py`` (the entry point): one module per tool, sharing :mod:`.common`
(timing, synthetic data, subprocess cells, step peak memory) and :func:`.cell.harness_cell` (the one
compose -> validate -> seed -> timer -> evaluate of every harness measurement)."""
