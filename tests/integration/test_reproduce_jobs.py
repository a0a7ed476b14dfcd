"""``cliptrase reproduce`` runs its jobs as ``cliptrase-eval -m`` runs sweep cells.

A failing job is recorded in ``failed.json``, the other jobs run, the summary lists the failed cells and the
command exits 1; the re-run evaluates only those. Two identical reproduce commands at once compute each
job once (the lock of its config hash). Run as a user would: ``cliptrase reproduce`` in a subprocess on a
VOC21 copy with the tiny CLIP; the datasets count as checked earlier (their ready markers are written
here), so no download or check runs and a prepared copy can go missing after its check, as on a cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.workspace import TIMEOUT_S, WEIGHTS, Result, Workspace
from test_labels_and_sweeps import write_context59

from cliptrase.reproduce.plan import READY_DIR, SUMMARY_NAME

pytestmark = pytest.mark.integration

EXPERIMENT = "paper_table"
SKIPPED = "| complete result found, skipped |"


def _mark_checked(ws: Workspace, *datasets: str) -> None:
    """The ready markers ``cliptrase reproduce`` writes once a dataset's copy passed ``data check``."""
    for name in datasets:
        marker = ws.data / READY_DIR / f"{name}.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"dataset": name, "checked_at": "", "notes": [], "subset": True}))


def _args(*datasets: str) -> list[str]:
    return [
        *("reproduce", "paper", "--datasets", *datasets, "--weights", str(WEIGHTS)),
        *("--max-images", "2", "--device", "cpu", "--workers", "1", "--subset"),
    ]


def _summary(ws: Workspace) -> str:
    return (ws.results / EXPERIMENT / SUMMARY_NAME).read_text()


def test_reproduce_records_a_failed_job_runs_the_others_and_retries_only_it(ws: Workspace, voc: Path):
    """context59 was checked, then its copy went missing: its 2 jobs fail, voc21's 2 run; exit 1."""
    _mark_checked(ws, "voc21", "context59")
    first = ws.run("cliptrase", *_args("voc21", "context59"))
    assert first.returncode == 1, first.output[-3000:]
    assert "Traceback" not in first.output, first.output[-3000:]
    for text in ("2 of 4 cells failed", "failed: context59/paper224/cliptrase", "VOC2010", "re-run"):
        assert text in first.output, f"{text!r} not in:\n{first.output[-3000:]}"
    done = ws.records(EXPERIMENT)
    assert len(done) == 2 and all("voc21" in p.parent.name for p in done)
    failures = sorted((ws.results / EXPERIMENT).glob("*/failed.json"))
    assert len(failures) == 2 and all("context59" in p.parent.name for p in failures)
    assert all("VOC2010" in json.loads(p.read_text())["error"] for p in failures)
    assert "| failed |" in (ws.results / EXPERIMENT / "table.md").read_text()
    summary = _summary(ws)
    assert "## Failed cells (2 of 4)" in summary and "- context59/paper336/cliptrase: " in summary
    assert "**context59** (INCOMPLETE)" in summary

    kept = {p: p.stat().st_mtime_ns for p in done}
    write_context59(ws.data / "VOCdevkit" / "VOC2010")
    second = ws.run("cliptrase", *_args("voc21", "context59"))
    second.assert_ok()
    assert {p: p.stat().st_mtime_ns for p in done} == kept  # complete jobs are not recomputed
    assert len(ws.records(EXPERIMENT)) == 4
    assert not list((ws.results / EXPERIMENT).glob("*/failed.json"))
    summary = _summary(ws)
    assert "Failed cells" not in summary and summary.count(SKIPPED) == 2
    assert "failed" not in (ws.results / EXPERIMENT / "table.md").read_text()


def test_two_identical_reproduce_commands_at_once_compute_each_job_once(ws: Workspace, voc: Path):
    _mark_checked(ws, "voc21")
    procs = [ws.popen("cliptrase", *_args("voc21")) for _ in range(2)]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
        results.append(Result(proc.returncode, out))
    for result in results:
        result.assert_ok()
    assert len(ws.records(EXPERIMENT)) == 2  # paper224 and paper336, each written once
    outputs = "".join(r.output for r in results)
    assert outputs.count("| evaluated |") == 2 and outputs.count(SKIPPED) == 2, outputs[-3000:]


def test_reproduce_and_cliptrase_eval_share_one_job_lock(ws: Workspace, voc: Path):
    """The job lock is the config hash's, whichever command runs the job."""
    _mark_checked(ws, "voc21")
    eval_args = [
        *(f"experiment={EXPERIMENT}", "dataset=voc21", "protocol=paper224", "method=cliptrase"),
        *("model=weights_file", f"model.weights={WEIGHTS}", "max_images=2", "device=cpu"),
        f"paths.data_root={ws.data}",
    ]
    both = [ws.popen("cliptrase", *_args("voc21")), ws.popen("cliptrase-eval", *eval_args)]
    for proc in both:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
        Result(proc.returncode, out).assert_ok()
    assert len(ws.records(EXPERIMENT)) == 2
