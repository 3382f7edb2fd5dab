"""--set values applied together (their order never matters) and the workbench's command line:
absolute paths and the run's engine. The page's commands run end to end in tests/test_workbench.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.cli import load_trials
from pipeline.core.errors import UsageError
from pipeline.criteria import load_trial
from pipeline.outputs.settings import Rerun
from pipeline.outputs.workbench.page import _command, _trial_file


@pytest.mark.parametrize("sets", [["age_range.min_age=70", "age_range.max_age=80"],
                                  ["age_range.max_age=80", "age_range.min_age=70"]])
def test_set_order_never_matters(sets):
    t = load_trial("nct04411641", sets)  # the maximum was 60: min 70 alone would be refused
    crit = {c.id: c for c in t.criteria}["age_range"]
    assert crit.parameters["min_age"] == 70 and crit.parameters["max_age"] == 80
    assert crit.overridden == {"min_age", "max_age"}


def test_set_still_checks_the_result():
    with pytest.raises(UsageError, match="age_range"):
        load_trial("nct04411641", ["age_range.max_age=80", "age_range.min_age=90"])
    with pytest.raises(UsageError, match="no criterion 'edss_rang'"):
        load_trial("nct04411641", ["edss_rang.max_edss=6"])


def test_set_order_with_several_trials():
    a = load_trials(["nct04411641", "nct04047628"], ["age_range.min_age=70", "age_range.max_age=80"])
    b = load_trials(["nct04411641", "nct04047628"], ["age_range.max_age=80", "age_range.min_age=70"])
    for x, y in zip(a, b):
        assert {c.id: c.parameters for c in x.criteria} == {c.id: c.parameters for c in y.criteria}
        assert {c.id: c for c in x.criteria}["age_range"].parameters["min_age"] == 70


def test_the_command_has_absolute_paths_and_the_engine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.toml").write_text(Path(__file__).resolve().parent.parent.joinpath(
        "pipeline/trials/nct04047628.toml").read_text("utf-8"), "utf-8")
    trial = load_trial("my.toml")
    opts = Rerun(input=Path("export"), as_of=dt.date(2026, 11, 1), engine="duckdb")
    args = _command(opts, trial)["args"]
    assert args[args.index("--input") + 1] == str(tmp_path / "export")
    assert args[args.index("--trial") + 1] == str(tmp_path / "my.toml")
    assert args[args.index("--engine") + 1] == "duckdb"
    assert "--engine" not in _command(replace(opts, engine="polars"), trial)["args"]
    # another input format: a URL as given (never made a path), and the options that read it
    url = replace(opts, input="postgresql://reader@db.example/registry",
                  source_options={"format": "omop", "cdm_schema": "cdm", "location": "ignored"})
    args = _command(url, trial)["args"]
    assert args[args.index("--input") + 1] == "postgresql://reader@db.example/registry"
    assert args[args.index("--input-format") + 1] == "omop" and args[args.index("--cdm-schema") + 1] == "cdm"
    # The trial file cut into its criteria: the blocks put back together read as the whole file.
    cut = _trial_file(trial)
    assert cut is not None and len(cut["blocks"]) == len(trial.criteria)
    assert cut["header"] + "".join(cut["blocks"]) == (tmp_path / "my.toml").read_text("utf-8").rstrip("\n") + "\n" \
        or cut["header"] + "".join(cut["blocks"]) == (tmp_path / "my.toml").read_text("utf-8")
    (tmp_path / "odd.toml").write_text('id = "odd"\ntitle = "t"\ncriteria = []\n', "utf-8")
    assert _trial_file(SimpleNamespace(source=str(tmp_path / "odd.toml"), ids=[])) is None
