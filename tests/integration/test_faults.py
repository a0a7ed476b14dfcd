"""Concurrent jobs, interrupts and failing writes lose nothing."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.workspace import TIMEOUT_S, Result, Workspace, command, eval_args, label_map, write_voc

from cliptrase.errors import ExitCode

pytestmark = pytest.mark.integration


def _finish(proc: subprocess.Popen) -> Result:
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    return Result(proc.returncode, out)


def test_the_same_job_twice_at_once_computes_once(ws: Workspace, voc: Path):
    """The second job waits for the first and reuses its record (no ResultExistsError)."""
    procs = [ws.popen("cliptrase-eval", *eval_args()) for _ in range(2)]
    results = [_finish(p) for p in procs]
    for result in results:
        result.assert_ok()
    assert len(ws.records()) == 1
    assert sum("complete result" in r.output for r in results) == 1  # exactly one reused the other's


@pytest.mark.slow
def test_different_jobs_of_one_experiment_in_parallel(ws: Workspace, voc: Path):
    procs = [ws.popen("cliptrase-eval", *eval_args(f"method.eps={eps}")) for eps in (0.6, 0.8)]
    for proc in procs:
        _finish(proc).assert_ok()
    assert len(ws.records()) == 2
    table = (ws.results / "default" / "table.md").read_text()
    assert "eps=0.6" in table and "eps=0.8" in table  # the last table written holds both rows
    assert not list((ws.results / "default").rglob("*.tmp"))


def _long_voc(ws: Workspace, n: int = 60) -> None:
    write_voc(ws.data, {f"2007_{i:06d}": label_map([0, 1 + i % 20]) for i in range(n)})


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_mid_run_ends_in_one_line_and_the_rerun_resumes(ws: Workspace, sig: signal.Signals):
    _long_voc(ws)
    args = eval_args("protocol=standard", "num_workers=2")
    proc = ws.popen("cliptrase-eval", *args)
    lines = []
    for line in proc.stdout:  # the job logs "run <name> ... ->" once the model is about to be built
        lines.append(line)
        if " run " in line and "->" in line:
            break
    time.sleep(4)
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=TIMEOUT_S)
    result = Result(proc.returncode, "".join(lines) + rest)
    result.assert_user_error("interrupted")
    assert result.returncode == 130
    assert not ws.records() and not list(ws.results.rglob("*.tmp"))
    ws.run("cliptrase-eval", *args).assert_ok()
    assert len(ws.records()) == 1


def _limited(limit_bytes: int):
    def preexec() -> None:  # a file larger than this fails to write (EFBIG), as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return preexec


def _run_limited(ws: Workspace, limit_bytes: int, script: str, *args: str) -> Result:
    proc = subprocess.run(
        command(script, *args),
        capture_output=True,
        text=True,
        env=ws.env,
        cwd=ws.root,
        timeout=TIMEOUT_S,
        preexec_fn=_limited(limit_bytes),
    )
    return Result(proc.returncode, proc.stdout + proc.stderr)


def test_a_failing_write_keeps_previous_records_and_tables(ws: Workspace, voc: Path):
    ws.eval().assert_ok()
    experiment = ws.results / "default"
    before = {p: p.read_bytes() for p in experiment.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    assert experiment / "table.md" in before

    table = _run_limited(ws, 64, "cliptrase-table", str(experiment))
    table.assert_user_error("cannot write", str(experiment / "table"))
    quiet = ["hydra.output_subdir=null", "hydra/job_logging=stdout"]  # no log files: the limit hits a record
    job = _run_limited(ws, 1024, "cliptrase-eval", *eval_args("method.eps=0.5", *quiet))
    job.assert_user_error("cannot write")

    after = {p: p.read_bytes() for p in experiment.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    assert {p: after.get(p) for p in before} == before  # nothing lost or half-written
    assert len(ws.records()) == 1 and not list(ws.results.rglob("*.tmp"))
    assert json.loads(ws.records()[0].read_text())["complete"] is True


def test_sigterm_ends_like_ctrl_c_in_a_real_process(tmp_path):
    """A process that installed the handler and is killed with SIGTERM exits 130 after one line."""
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import logging, sys, time
            from cliptrase.errors import error_boundary, sigterm_as_interrupt
            logging.basicConfig(level=logging.INFO)
            sigterm_as_interrupt()
            with error_boundary(prefix="reproduce"):
                print("started", flush=True)
                time.sleep(60)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "started"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED
    assert time.monotonic() - start < 10
    assert "Traceback" not in err
    assert err.strip().splitlines() == ["ERROR:cliptrase:reproduce: interrupted"]
