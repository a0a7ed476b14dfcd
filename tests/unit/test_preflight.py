"""``cliptrase-eval``'s command line, checked before Hydra sets the run up (``harness/preflight.py``)."""

from __future__ import annotations

import pytest

from cliptrase.config import register_configs
from cliptrase.errors import ConfigError, OutputError, UnknownNameError
from cliptrase.harness.compose import EVAL_CONFIG
from cliptrase.harness.preflight import check_command_line, hydra_arguments
from cliptrase.paths import config_dir


def _check(*argv: str) -> None:
    register_configs()
    check_command_line(list(argv), config_dir=config_dir(), config_name=EVAL_CONFIG)


def test_hydra_arguments_adapter():
    """The adapter to Hydra's own parser: flags and overrides as Hydra reads them; a command line Hydra
    refuses (override before -m, bad --cfg) is None, without printing."""
    args = hydra_arguments(["-m", "dataset=demo,voc21", "seed=1"])
    assert args.multirun and args.overrides == ["dataset=demo,voc21", "seed=1"]
    assert hydra_arguments(["--cfg", "job", "seed=1"]).cfg == "job"
    assert hydra_arguments(["seed=1", "-m", "dataset=demo"]) is None
    assert hydra_arguments(["--cfg", "nosuch"]) is None


def test_every_sweep_value_is_composed(tmp_path):
    _check("-m", "dataset=demo", f"paths.results_dir={tmp_path}")
    missing = r"Could not find 'dataset/nosuch'; valid dataset options: .*demo"
    with pytest.raises(UnknownNameError, match=missing):
        _check("-m", "dataset=demo,nosuch", f"paths.results_dir={tmp_path}")
    with pytest.raises(UnknownNameError, match="valid hydra/launcher options: basic"):
        _check("hydra/launcher=nosuch", f"paths.results_dir={tmp_path}")
    with pytest.raises(ConfigError, match=r"Could not override 'nosuchkey'.*\+nosuchkey=3"):
        _check("nosuchkey=3", f"paths.results_dir={tmp_path}")
    _check("--cfg", "job", "dataset=nosuch")  # not a run: Hydra prints the config, nothing is checked here


@pytest.mark.parametrize("mode", [[], ["-m"]])
def test_output_folder_below_a_file(tmp_path, mode):
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(OutputError, match=f"{afile} is a file, not a folder; set paths.results_dir"):
        _check(*mode, f"paths.results_dir={afile / 'x'}")
    _check(*mode, f"paths.results_dir={tmp_path / 'fine'}")
    # only the folder Hydra puts its timestamped folder in is made (Hydra resolves the time again)
    assert [p.name for p in (tmp_path / "fine" / "default").iterdir()] == [".hydra"]
    assert not list((tmp_path / "fine" / "default" / ".hydra").iterdir())
