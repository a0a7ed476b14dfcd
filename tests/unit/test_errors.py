"""The one error boundary: user errors are one line with their exit code; every console script installs the
SIGTERM handler (a real process killed with SIGTERM: tests/integration/test_faults.py)."""

from __future__ import annotations

import logging

import pytest

from cliptrase.errors import BoundaryExit, ConfigError, ExitCode, error_boundary


def test_user_error_is_one_line_and_its_code(caplog):
    def bad() -> int:
        raise ConfigError("method.eps=-1 is invalid; valid: a number > 0")

    with caplog.at_level(logging.ERROR), pytest.raises(BoundaryExit) as stop, error_boundary(prefix="eval"):
        bad()
    assert stop.value.code == ExitCode.USER_ERROR
    assert [r.getMessage() for r in caplog.records] == ["eval: method.eps=-1 is invalid; valid: a number > 0"]


def test_programming_error_keeps_its_traceback():
    def broken() -> int:
        raise TypeError("a bug")

    with pytest.raises(TypeError), error_boundary():
        broken()


def test_every_argparse_console_script_installs_the_handler(monkeypatch, tmp_path):
    from cliptrase.cli import console
    from cliptrase.cli import main as cli_main
    from cliptrase.cli import report as report_cli
    from cliptrase.cli import table as table_cli

    installed = []
    monkeypatch.setattr(console, "sigterm_as_interrupt", lambda: installed.append(True))
    assert cli_main.main(["models", "fetch", "nope"]) == ExitCode.USER_ERROR
    assert table_cli.main([str(tmp_path / "missing")]) == ExitCode.USER_ERROR
    assert report_cli.main([str(tmp_path / "missing")]) == ExitCode.USER_ERROR
    assert installed == [True, True, True]
