"""Tables show failed sweep cells and cells scored without invalid label pixels (in-process, fast)."""

from __future__ import annotations

from helpers.stats_records import one_class_record

from cliptrase.records.failures import FailedRecord
from cliptrase.reporting.tables import FAILED, build_tables, to_csv, to_markdown


def _failure(row: str, column: str, definition: str = "paper_scores") -> FailedRecord:
    return FailedRecord(
        experiment="e",
        run=f"{column}__{row}",
        row=row,
        column=column,
        metric_definition=definition,
        config_hash="1" * 16,
        error="split file x is empty",
        error_type="DataError",
    )


def test_failed_and_invalid_label_cells_are_marked():
    records = [
        one_class_record("r", "voc21", 40.0, invalid_label_pixels=12),
        one_class_record("r", "voc20", 60.0),
    ]
    failures = [_failure("r", "context59"), _failure("s", "voc21"), _failure("r", "voc20")]
    (table,) = build_tables(records, failures=failures)
    assert table.columns == ("voc21", "voc20", "context59")
    row_r, row_s = table.rows
    assert row_r.failed == {"context59"} and row_r.invalid_labels == {"voc21"}  # voc20 succeeded later
    assert row_s.failed == {"voc21"} and not row_s.complete
    markdown = to_markdown(table)
    assert "| r | 40.00† | 60.00 | failed | 50.00* |" in markdown
    assert "allow_invalid_labels=true" in markdown and "failed.json" in markdown
    assert to_csv(table).splitlines()[1] == "r,measured,40.0000,60.0000,failed,50.0000,false"


def test_a_sweep_whose_cells_all_failed_still_has_a_table():
    (table,) = build_tables([], failures=[_failure("r", "voc21"), _failure("r", "voc20")])
    assert table.metric_definition == "paper_scores"
    assert table.rows[0].failed == {"voc21", "voc20"} and table.rows[0].avg is None
    assert f"| r | {FAILED} | {FAILED} |" in to_markdown(table)
