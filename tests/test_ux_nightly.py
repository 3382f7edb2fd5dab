"""Issue 32: a nightly a data manager can leave alone. The forecast options, quiet success, one error
line, RUNS/status.json on every outcome (an interrupt at start-up too), the headline's change since the
previous night, and the README's scheduling examples."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from pipeline.cli import main
from tests.conftest import ROOT
from tests.test_nightly import D1, D2, D3, SAMPLE, nightly


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "e"
    shutil.copytree(SAMPLE, folder)
    return folder


def status(runs):
    return json.loads((runs / "status.json").read_text())


def test_forecast_options_are_accepted_and_success_is_quiet(export, tmp_path):
    runs = tmp_path / "runs"
    res = nightly(export, runs, D1, "--history", "3", "--projection-months", "6", "--target", "20",
                  "--conversion", "0.2..0.4", "--screen-pass", "0.8", "--screening-capacity", "10")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert (runs / D1 / "history.csv").is_file() and (runs / D1 / "projection.csv").is_file()
    s = json.loads((runs / D1 / "summary.json").read_text())
    assert s["projection"]  # the forecast is in the scheduled run
    st = status(runs)
    assert st["exit_code"] == 0 and st["date"] == D1 and st["consecutive_failures"] == 0
    assert st["last_success"]["date"] == D1
    assert st["counts"]["nct04203017"]["eligible"] == s["eligible"]
    assert not list(runs.glob(".status.json.tmp-*"))


def test_forecast_options_still_need_history(export, tmp_path):
    res = nightly(export, tmp_path / "runs", D1, "--target", "20")
    assert res.returncode == 2 and "needs --history" in res.stderr


def test_verbose_text_and_json(export, tmp_path):
    res = nightly(export, tmp_path / "a", D1, "--verbose", "--log-format", "text")
    assert res.returncode == 0
    assert re.search(r"^info start: nightly run for 2026-11-01$", res.stderr, re.M)
    assert "{" not in res.stderr.splitlines()[0]
    res = nightly(export, tmp_path / "b", D1, "--verbose")
    assert res.returncode == 0  # --verbose alone is text; JSON with --log-format json
    res = nightly(export, tmp_path / "c", D1, "--verbose", "--log-format", "json")
    assert all(json.loads(line)["stage"] for line in res.stderr.splitlines())


def shrink(export, tmp_path):
    shrunk = tmp_path / "shrunk"
    shutil.copytree(export, shrunk)
    lines = (shrunk / "visits.csv").read_text().splitlines(keepends=True)
    (shrunk / "visits.csv").write_text("".join(lines[: int(len(lines) * 0.7)]))
    return shrunk


def test_a_failed_night_says_one_line_and_counts_failures(export, tmp_path):
    runs = tmp_path / "runs"
    assert nightly(export, runs, D1).returncode == 0
    shrunk = shrink(export, tmp_path)
    res = nightly(shrunk, runs, D2)
    assert res.returncode == 4
    assert len(res.stderr.splitlines()) == 1, res.stderr  # no JSON copy of the same error
    assert not res.stderr.lstrip().startswith("{") and "visits.csv" in res.stderr
    st = status(runs)
    assert st["exit_code"] == 4 and st["consecutive_failures"] == 1 and not st["ok"]
    assert st["last_success"]["date"] == D1
    assert st["failed_log"].endswith(f"failed-{D2}.log") and (runs / f"failed-{D2}.log").is_file()

    res = nightly(shrunk, runs, D3, "--log-format", "json")
    assert res.returncode == 4
    (line,) = res.stderr.splitlines()
    event = json.loads(line)
    assert event["level"] == "error" and event["exit_status"] == 4 and "visits.csv" in event["message"]
    assert event["failed_log"].endswith(f"failed-{D3}.log")
    assert status(runs)["consecutive_failures"] == 2 and status(runs)["last_success"]["date"] == D1

    assert nightly(shrunk, runs, D3, "--accept-volume-drop").returncode == 0
    st = status(runs)
    assert st["consecutive_failures"] == 0 and st["last_success"]["date"] == D3 and st["failed_log"] is None


def test_an_interrupt_at_start_up_leaves_a_failed_log_and_status(export, tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) while msfeas is still importing and loading trials: no run log exists yet."""
    import pipeline.cli as cli

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_trials", interrupted)
    runs = tmp_path / "new" / "runs"  # not even made yet
    res = nightly(export, runs, D1)
    assert res.returncode == 130
    assert len(res.stderr.splitlines()) == 1 and f"failed-{D1}.log" in res.stderr
    event = json.loads((runs / f"failed-{D1}.log").read_text().splitlines()[-1])
    assert event["exit_status"] == 130 and event["level"] == "error"
    st = status(runs)
    assert st["exit_code"] == 130 and st["consecutive_failures"] == 1 and st["last_success"] is None


def test_a_usage_error_after_parsing_is_recorded_too(export, tmp_path):
    runs = tmp_path / "runs"
    assert main(["nightly", "--input", str(export), "--runs-dir", str(runs), "--as-of", D1,
                 "--set", "nope.x=1"]) == 2
    assert status(runs)["exit_code"] == 2 and (runs / f"failed-{D1}.log").is_file()


def test_the_lock_message_is_words_not_cut_json():
    from pipeline.nightly import holder_text
    raw = json.dumps({"pid": 4242, "host": "db1", "started": "2026-11-24T02:00:00+00:00"})
    assert holder_text(raw) == "pid 4242 on host db1, started 2026-11-24T02:00:00+00:00"
    assert holder_text("") == "holder unknown"
    assert holder_text("x" * 500).startswith("lock file reads 'xxx") and len(holder_text("x" * 500)) < 150


def test_headline_shows_the_change_since_the_previous_night(export, tmp_path):
    runs = tmp_path / "runs"
    assert nightly(export, runs, D1).returncode == 0
    fewer = tmp_path / "fewer"
    shutil.copytree(export, fewer)
    lines = (fewer / "patients.csv").read_text().splitlines(keepends=True)
    (fewer / "patients.csv").write_text("".join(lines[:-50]))  # 50 patients fewer (within --max-drop)
    assert nightly(fewer, runs, D2).returncode == 0
    html = (runs / D2 / "report.html").read_text()
    before = json.loads((runs / D1 / "summary.json").read_text())
    after = json.loads((runs / D2 / "summary.json").read_text())
    d = after["population"] - before["population"]
    assert d < 0
    assert re.search(rf'data-delta="population">{d:+d} since {D1}<', html)
    de = after["eligible"] + after["possible"] - before["eligible"] - before["possible"]
    assert after["changes"]["previous_counts"]["population"] == before["population"]
    assert de == after["eligible"] - before["eligible"] + after["possible"] - before["possible"]
    first = (runs / D1 / "report.html").read_text()
    assert "data-delta" not in first  # the first night has nothing to compare with


def test_readme_schedules_with_onfailure_and_monitors_status():
    readme = (ROOT / "README.md").read_text()
    assert "OnFailure=" in readme and "status.json" in readme
    assert re.search(r"msfeas nightly .*--history \d+", readme)
    assert re.search(r"jq .*status\.json", readme)
    make = (ROOT / "Makefile").read_text()
    recipe = make.split("\nnightly:", 1)[1].split("\n\n", 1)[0]
    assert all(line.startswith("\t@") for line in recipe.splitlines()[1:] if line.startswith("\t"))
