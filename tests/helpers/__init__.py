"""Code the tests share, importable as ``helpers`` (pytest puts ``tests/`` on ``sys.path``).

- :mod:`helpers.golden`: where the golden set is (``tests/golden/data`` or ``$CLIPTRASE_GOLDEN_DIR``).
- :mod:`helpers.config`: the eval config composed as ``cliptrase-eval`` composes it.
- :mod:`helpers.miniatures`: writers of miniature benchmark copies in their official on-disk layouts.
- :mod:`helpers.loopback_http`: a loopback HTTP server for the download tests; it fails any other host.
- :mod:`helpers.weights_cache`: open_clip's cache layout for the weights and real-path tests.
- :mod:`helpers.workspace`: the console scripts in a subprocess on a tiny VOC copy (integration tests).
- :mod:`helpers.stats_records`: synthetic records and ``per_image.npz`` for the statistics tests.

Synthetic VOC copies are written by the library's one writer, ``cliptrase.datasets.demo.write_voc_layout``.
"""
