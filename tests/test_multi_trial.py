"""Several trials on one reading of the export: per trial exactly what a one-trial run writes, plus
the overview (overview.csv, candidates_by_trial.csv, report.html) and `msfeas trials`."""

from __future__ import annotations

import json

import polars as pl
import pytest

from pipeline.cli import main
from pipeline.criteria import bundled_trials
from pipeline.synth import generate, write_export

TRIALS = ["nct04203017", "nct04047628", "nct04411641"]
FILES = ["evaluation.parquet", "candidates.csv", "attrition.csv", "site_counts.csv", "summary_public.json",
         "report.html", "quarantine/patients.csv"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi") / "export"
    write_export(generate(400, seed=11), folder, with_bad_rows=True)
    return folder


def run(args: list[str]) -> int:
    return main(["run", *args, "--as-of", "2026-11-01"])


def test_each_trial_as_in_a_one_trial_run(export, tmp_path, capsys):
    assert run(["--input", str(export), "--out", str(tmp_path / "all"), "--trial", "all"]) == 0
    out = capsys.readouterr().out
    assert "3 trials" in out and "nct04411641" in out
    for t in TRIALS:
        assert run(["--input", str(export), "--out", str(tmp_path / t), "--trial", t]) == 0
        for f in FILES:
            assert (tmp_path / "all" / t / f).read_bytes() == (tmp_path / t / f).read_bytes(), (t, f)
        single = json.loads((tmp_path / t / "summary.json").read_text())
        multi = json.loads((tmp_path / "all" / t / "summary.json").read_text())
        single.pop("timings_seconds"), multi.pop("timings_seconds")
        assert single == multi
    overview = pl.read_csv(tmp_path / "all" / "overview.csv")
    assert overview["trial"].to_list() == sorted(TRIALS)  # `all` is the bundled trials in id order
    for row in overview.iter_rows(named=True):
        s = json.loads((tmp_path / row["trial"] / "summary.json").read_text())
        assert [row[k] for k in ("population", "eligible", "possible", "ineligible")] == \
            [s[k] for k in ("population", "eligible", "possible", "ineligible")]
        attr = pl.read_csv(tmp_path / row["trial"] / "attrition.csv").sort(["n_fail", "step"], descending=[True, False])
        assert row["excluding_1"] == attr["criterion"][0] and row["excluding_1_n_fail"] == attr["n_fail"][0]
    by_trial = pl.read_csv(tmp_path / "all" / "candidates_by_trial.csv")
    for t in TRIALS:
        cands = pl.read_csv(tmp_path / t / "candidates.csv")
        mine = by_trial.filter(pl.col("trial") == t)
        assert mine["patient_id"].to_list() == cands["patient_id"].to_list()
        assert mine["status"].to_list() == cands["status"].to_list()
    html = (tmp_path / "all" / "report.html").read_text()
    for t in TRIALS:
        assert f'href="{t}/report.html"' in html


def test_set_applies_to_the_trials_that_have_the_parameter(export, tmp_path):
    assert run(["--input", str(export), "--out", str(tmp_path / "a"), "--trial", "nct04047628", "--trial",
                "nct04411641", "--set", "edss_range.max_edss=7.0"]) == 0
    for t in ("nct04047628", "nct04411641"):
        s = json.loads((tmp_path / "a" / t / "summary.json").read_text())
        assert s["parameters"]["edss_range"]["max_edss"] == {"value": 7.0, "overridden": True}


def test_set_that_no_trial_has_is_a_usage_error(export, tmp_path, capsys):
    code = run(["--input", str(export), "--out", str(tmp_path / "a"), "--trial", "all", "--set", "lvef.nothing=1"])
    assert code == 2
    assert "none of the trials" in capsys.readouterr().err


def test_trials_lists_the_bundled_trials(capsys):
    assert main(["trials"]) == 0
    out = capsys.readouterr().out
    for t in bundled_trials():
        assert t in out
    assert "optional tables read: conditions, mri, relapses, treatments, visits" in out


def test_report_names_the_tables_each_trial_reads(export, tmp_path):
    no_mri = tmp_path / "no_mri"
    no_mri.mkdir()
    for f in export.iterdir():
        if f.name != "mri.csv":
            (no_mri / f.name).write_bytes(f.read_bytes())
    assert run(["--input", str(no_mri), "--out", str(tmp_path / "r"), "--trial", "all"]) == 0
    html = (tmp_path / "r" / "nct04047628" / "report.html").read_text()
    assert "absent: these criteria are unknown for every patient</span></td><td>disease_activity, activity_on_dmt" in html
    ev = pl.read_parquet(tmp_path / "r" / "nct04047628" / "evaluation.parquet")
    assert set(ev["disease_activity"]) == {"unknown"} and set(ev["activity_on_dmt"]) == {"unknown"}


def test_nightly_with_several_trials(export, tmp_path):
    runs = tmp_path / "runs"
    for day in ("2026-10-31", "2026-11-01"):
        assert main(["nightly", "--input", str(export), "--runs-dir", str(runs), "--as-of", day, "--trial", "all"]) == 0
    latest = runs / "latest"
    for t in TRIALS:
        assert (latest / t / "changes.csv").is_file()
        s = json.loads((latest / t / "summary.json").read_text())
        assert s["changes"]["previous_run"] == "2026-10-31"
    manifest = json.loads((latest / "manifest.json").read_text())
    assert [t["id"] for t in manifest["trials"]] == sorted(TRIALS)
