"""Tables from result records: layout, averages, published/Δ rows, metric definitions, renderers, CLI."""

from __future__ import annotations

import csv
import io
import json
import logging
import math

import pytest
from PIL import Image

from cliptrase.cli import table as table_cli
from cliptrase.records.results import ResultRecord, config_hash, write_record
from cliptrase.reporting import tables
from cliptrase.reporting.tables import build_table, build_tables, to_bar_chart, to_csv, to_markdown

ROW_A = "cliptrase | ViT-B-16/openai"
ROW_B = "clip | ViT-B-16/openai"


def rec(
    row: str,
    column: str,
    miou: float,
    *,
    run: str | None = None,
    definition: str = "mmseg_iou",
    date: str = "2025-01-01T00:00:00+00:00",
) -> ResultRecord:
    cfg = {"row": row, "dataset": column, "definition": definition}
    return ResultRecord(
        experiment="exp",
        run=run or f"{row.split()[0]}-{column}",
        row=row,
        column=column,
        metric_definition=definition,
        metrics={"mIoU": miou, "mAcc": miou + 10},
        class_names=["a", "b"],
        per_class={"IoU": [miou, miou]},
        config=cfg,
        config_hash=config_hash(cfg),
        provenance={"date": date},
    )


def two_by_three() -> list[ResultRecord]:
    """Rows A and B over voc21, ade150 and context59; B has no ade150 result."""
    return [
        rec(ROW_A, "ade150", 16.0, run="0"),
        rec(ROW_A, "voc21", 50.0, run="1"),
        rec(ROW_A, "context59", 33.0, run="2"),
        rec(ROW_B, "voc21", 20.0, run="3"),
        rec(ROW_B, "context59", 10.5, run="4"),
    ]


def test_layout_order_missing_cell_and_average():
    table = build_table(two_by_three())
    assert table.columns == ("voc21", "context59", "ade150")  # canonical order, not first seen
    assert [r.label for r in table.rows] == [ROW_A, ROW_B]  # first seen after sorting by run
    a, b = table.rows
    assert a.cells == {"voc21": 50.0, "context59": 33.0, "ade150": 16.0}
    assert a.avg == pytest.approx(33.0) and a.complete
    assert b.cells["ade150"] is None and b.avg == pytest.approx(15.25) and not b.complete
    assert table.metric == "mIoU" and table.metric_definition == "mmseg_iou"


def test_unknown_datasets_follow_canonical_ones_alphabetically():
    records = [rec(ROW_A, c, 1.0, run=c) for c in ("zeta", "demo", "alpha", "voc20")]
    assert build_table(records).columns == ("voc20", "demo", "alpha", "zeta")


def test_other_metric_and_unknown_metric():
    assert build_table(two_by_three(), "mAcc").rows[0].cells["voc21"] == 60.0
    with pytest.raises(ValueError, match=r"no record has metric 'fwIoU'; choose one of: mAcc, mIoU"):
        build_table(two_by_three(), "fwIoU")
    with pytest.raises(ValueError, match="cliptrase-eval experiment="):
        build_table([])


def test_nan_metric_is_a_missing_cell():
    records = [rec(ROW_A, "voc21", math.nan), rec(ROW_A, "context59", 30.0)]
    row = build_table(records).rows[0]
    assert row.cells["voc21"] is None and row.avg == 30.0 and not row.complete


def test_duplicate_cell_keeps_newest_and_warns(caplog):
    records = [
        rec(ROW_A, "voc21", 40.0, run="new", date="2025-02-01T00:00:00+00:00"),
        rec(ROW_A, "voc21", 30.0, run="old", date="2025-01-01T00:00:00+00:00"),
    ]
    with caplog.at_level(logging.WARNING):
        table = build_table(records)
    assert table.rows[0].cells["voc21"] == 40.0
    assert "'new'" in caplog.text and "'old'" in caplog.text


def test_published_and_delta_rows():
    published = {ROW_A: {"voc21": 53.0, "context59": 30.0, "coco_stuff171": 20.0}, "unknown": {"voc21": 1}}
    table = build_table(two_by_three(), published=published)
    labels = [r.label for r in table.rows]
    assert labels == [ROW_A, ROW_A + " (published)", ROW_A + " Δ vs published", ROW_B]
    measured, pub, delta, _ = table.rows
    assert measured.cells == {"voc21": 50.0, "context59": 33.0, "ade150": 16.0}  # untouched by published
    assert pub.kind == "published" and pub.cells == {"voc21": 53.0, "context59": 30.0, "ade150": None}
    assert "coco_stuff171" not in table.columns  # published datasets never add columns
    assert delta.kind == "delta" and delta.cells["voc21"] == -3.0 and delta.cells["context59"] == 3.0
    assert delta.cells["ade150"] is None and delta.avg == pytest.approx(0.0)
    md = to_markdown(table)
    assert "| -3.00 | +3.00 | — | +0.00* |" in md


def test_mixed_metric_definitions_are_never_mixed():
    records = [*two_by_three(), rec(ROW_A, "voc21", 60.0, run="p", definition="paper_scores")]
    with pytest.raises(ValueError, match="mix metric definitions \\(mmseg_iou, paper_scores\\)"):
        build_table(records)
    mmseg, paper = build_tables(records)
    assert (mmseg.metric_definition, paper.metric_definition) == ("mmseg_iou", "paper_scores")
    assert mmseg.rows[0].cells["voc21"] == 50.0
    assert paper.columns == ("voc21",) and paper.rows[0].cells["voc21"] == 60.0
    assert build_table(records, metric_definition="paper_scores").rows[0].avg == 60.0
    with pytest.raises(ValueError, match="no records with metric definition 'iou'"):
        build_table(records, metric_definition="iou")


def test_markdown_content():
    md = to_markdown(build_table(two_by_three()))
    lines = md.splitlines()
    assert lines[0] == "**mIoU (%)**, metric definition `mmseg_iou`"
    assert lines[2] == "| Row | voc21 | context59 | ade150 | Avg |"
    assert lines[3] == "|---|---:|---:|---:|---:|"
    assert lines[4] == "| cliptrase \\| ViT-B-16/openai | 50.00 | 33.00 | 16.00 | 33.00 |"
    assert lines[5] == "| clip \\| ViT-B-16/openai | 20.00 | 10.50 | — | 15.25* |"
    assert lines[-1].startswith("\\* average over the available datasets only")


def test_csv_content():
    rows = list(csv.reader(io.StringIO(to_csv(build_table(two_by_three())))))
    assert rows[0] == ["row", "kind", "voc21", "context59", "ade150", "Avg", "complete"]
    assert rows[1] == [ROW_A, "measured", "50.0000", "33.0000", "16.0000", "33.0000", "true"]
    assert rows[2] == [ROW_B, "measured", "20.0000", "10.5000", "", "15.2500", "false"]


def _assert_png(path, min_width=100):
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_width and image.height >= 100
        colours = image.convert("RGB").getcolors(image.width * image.height)  # never None at this limit
        assert len(colours) > 1  # something was drawn


def test_bar_chart_with_available_backend(tmp_path):
    path = to_bar_chart(build_table(two_by_three()), tmp_path / "t.png")
    _assert_png(path)
    assert [p.name for p in tmp_path.iterdir()] == ["t.png"]


def test_bar_chart_pil_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "_load_matplotlib", lambda: None)
    table = build_table(two_by_three(), published={ROW_A: {"voc21": 1.0}})
    _assert_png(to_bar_chart(table, tmp_path / "t.png"))


# ------------------------------------------------------------------------------------------------------ CLI


def write_experiment(exp, records):
    for r in records:
        write_record(r, exp / r.run)


def test_cli_writes_tables(tmp_path, caplog):
    exp = tmp_path / "results" / "exp"
    write_experiment(exp, two_by_three())
    with caplog.at_level(logging.INFO):
        assert table_cli.main([str(exp)]) == 0
    assert {"table.md", "table.csv", "table.png"} <= {p.name for p in exp.iterdir()}
    assert "| clip \\| ViT-B-16/openai | 20.00 |" in (exp / "table.md").read_text()
    assert "| Row | voc21 |" in caplog.text  # the markdown is logged


def test_cli_out_metric_and_published(tmp_path):
    exp, out = tmp_path / "exp", tmp_path / "out"
    write_experiment(exp, two_by_three())
    pub = tmp_path / "pub.json"
    pub.write_text(json.dumps({ROW_A: {"voc21": 55.5}}))
    assert table_cli.main([str(exp), "--metric", "mAcc", "--out", str(out), "--published", str(pub)]) == 0
    md = (out / "table.md").read_text()
    assert "**mAcc (%)**" in md and "(published) | 55.50 |" in md
    assert not (exp / "table.md").exists()


def test_cli_separates_metric_definitions(tmp_path):
    exp = tmp_path / "exp"
    write_experiment(exp, [*two_by_three(), rec(ROW_A, "voc21", 60.0, run="p", definition="paper_scores")])
    assert table_cli.main([str(exp)]) == 0
    names = {p.name for p in exp.iterdir()}
    assert {"table_mmseg_iou.md", "table_paper_scores.csv", "table_paper_scores.png"} <= names
    assert "table.md" not in names


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (
            lambda exp: None,
            [],
            "does not exist; results are written there by `cliptrase-eval -m experiment=exp`",
        ),
        (lambda exp: exp.mkdir(), [], "no complete results under"),
        (lambda exp: write_experiment(exp, two_by_three()), ["--metric", "nope"], "no record has metric"),
        (lambda exp: write_experiment(exp, two_by_three()), ["--published", "missing.json"], "missing.json"),
    ],
)
def test_cli_bad_input_exit_2_one_line(tmp_path, caplog, setup, args, message):
    exp = tmp_path / "exp"
    setup(exp)
    with caplog.at_level(logging.ERROR):
        assert table_cli.main([str(exp), *args]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]


def test_cli_bad_published_file(tmp_path, caplog):
    exp = tmp_path / "exp"
    write_experiment(exp, two_by_three())
    pub = tmp_path / "pub.json"
    pub.write_text(json.dumps({ROW_A: 3}))
    with caplog.at_level(logging.ERROR):
        assert table_cli.main([str(exp), "--published", str(pub)]) == 2
    assert "expected {" in caplog.text


def test_register_adds_table_subcommand(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    table_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["table", str(tmp_path), "--metric", "mAcc"])
    assert args.func is table_cli.run and args.metric == "mAcc" and args.out is None


def test_builtin_published_rows_for_matching_labels():
    """A ViT-B/16 CLIPtrase paper224 row gets the authors' README numbers; ablation rows get none."""
    from cliptrase.reporting.published import published_for_rows

    rows = {"cliptrase | vit_b16_openai | paper224", "cliptrase | vit_b16_openai | paper224 | eps=0.5"}
    got = published_for_rows(rows)
    assert list(got) == ["cliptrase | vit_b16_openai | paper224"]
    assert got["cliptrase | vit_b16_openai | paper224"]["voc20"] == 80.95


def test_peer_runs_get_their_published_rows_beside_them(tmp_path):
    """experiment=peers as a table: each run under its preset gets the row that preset produced, with Δ;
    the same method under the uniform `standard` protocol gets none (a different pipeline)."""
    from cliptrase.reporting.table_files import write_tables

    exp = tmp_path / "peers"
    naclip = "naclip | vit_b16_openai | naclip"
    clear = "clearclip | vit_b16_openai | clearclip"
    uniform = "naclip | vit_b16_openai | standard"
    write_experiment(
        exp,
        [
            rec(naclip, "voc21", 63.0, run="n-voc21"),
            rec(naclip, "cityscapes", 39.0, run="n-city"),
            rec(clear, "voc20", 80.0, run="c-voc20"),
            rec(uniform, "voc21", 60.0, run="u-voc21"),
        ],
    )
    (md_path,) = write_tables(exp)
    md = md_path.read_text()

    def line(label: str) -> str:  # the Markdown row whose label cell is `label` (its | escaped)
        cell = "| " + label.replace("|", "\\|") + " |"
        found = [ln for ln in md.splitlines() if ln.startswith(cell)]
        assert len(found) <= 1, found
        return found[0] if found else ""

    assert "64.07" in line(f"{naclip} (published)")  # sinahmr/NACLIP README, VOC21
    assert "38.27" in line(f"{naclip} (published)")  # its Cityscapes column
    assert "-1.07" in line(f"{naclip} Δ vs published")
    assert line(f"{clear} (published)")
    assert line(uniform) and not line(f"{uniform} (published)")
