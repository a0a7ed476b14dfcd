"""Rows that say what made them: labels and run folders from everything that changes the numbers; tables
never keep a stale layout; the empty-experiment hint is a command that works."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers.stats_records import random_matrices, write_run

from cliptrase.harness.compose import compose_job
from cliptrase.harness.identity import config_hash_of, row_label, run_name_of
from cliptrase.records.results import load_records
from cliptrase.reporting.table_files import write_tables
from cliptrase.reporting.tables import build_table


def _identity(*overrides: str) -> tuple[str, str, str]:
    cfg = compose_job(["experiment=demo", *overrides])
    digest = config_hash_of(cfg)
    return row_label(cfg), run_name_of(cfg, digest), digest


def test_shipped_options_keep_the_plain_label():
    label, run, _ = _identity()
    assert label == "cliptrase | random_vit_b16 | paper224"
    assert run.startswith("demo__random_vit_b16__cliptrase__paper224__")


@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("model.name=ViT-B-32", "cliptrase | ViT-B-32/random | paper224"),
        ("precision=bf16", "precision=bf16"),
        ("method.eps=0.5", "| eps=0.5"),
        ("protocol.image_size=336", "protocol.image_size=336"),
        ("max_images=3", "max_images=3"),
    ],
)
def test_a_setting_that_changes_the_numbers_changes_the_row(override, shown):
    base, changed = _identity(), _identity(override)
    assert changed[0] != base[0] and shown in changed[0]
    assert changed[2] != base[2]


def test_model_name_shows_in_the_run_folder():
    _, run, _ = _identity("model.name=ViT-B-32")
    assert run.startswith("demo__ViT-B-32-random__cliptrase__paper224__")


def test_distinct_configs_never_share_a_row():
    overrides = ["model.name=ViT-B-32", "precision=bf16", "method.eps=0.5", "seed=1", "method=clip"]
    identities = [_identity(*combo) for n in range(3) for combo in itertools.combinations(overrides, n)]
    by_label: dict[str, set[str]] = {}
    for label, _, digest in identities:
        by_label.setdefault(label, set()).add(digest)
    assert all(len(digests) == 1 for digests in by_label.values()), by_label


def test_weights_files_are_told_apart_by_content(tmp_path):
    a, b = tmp_path / "a" / "clip.pt", tmp_path / "b" / "clip.pt"
    for path, payload in ((a, b"first"), (b, b"second")):
        path.parent.mkdir()
        path.write_bytes(payload)
    labels = [_identity("model=weights_file", f"model.weights={p}")[0] for p in (a, b)]
    assert labels[0] != labels[1] and all(label.startswith("cliptrase | weights_file:") for label in labels)


def test_precision_runs_are_two_rows_of_the_table(tmp_path):
    matrices = random_matrices(np.random.default_rng(0), 5)
    for override in ((), ("precision=bf16",)):
        write_run(tmp_path, _identity(*override)[0], "demo", matrices, definition="paper_scores")
    table = build_table(load_records(tmp_path))
    assert [r.label for r in table.rows] == [
        "cliptrase | random_vit_b16 | paper224",
        "cliptrase | random_vit_b16 | paper224 | precision=bf16",
    ]


def test_no_stale_table_beside_the_split_tables(tmp_path):
    matrices = random_matrices(np.random.default_rng(1), 5)
    write_run(tmp_path, "clip | m | paper224", "demo", matrices, definition="paper_scores")
    write_tables(tmp_path)
    (tmp_path / "table_ci.md").write_text("old intervals")
    assert (tmp_path / "table.md").is_file()
    write_run(tmp_path, "clip | m | standard", "demo", matrices, definition="mmseg_iou")
    write_tables(tmp_path)
    names = sorted(p.name for p in tmp_path.glob("table*"))
    assert names == [f"table_{d}.{e}" for d in ("mmseg_iou", "paper_scores") for e in ("csv", "md", "png")]


def test_empty_experiment_hint_is_a_multirun(tmp_path):
    (tmp_path / "paper_table").mkdir()
    with pytest.raises(ValueError, match="cliptrase-eval -m experiment=paper_table"):
        write_tables(tmp_path / "paper_table")
