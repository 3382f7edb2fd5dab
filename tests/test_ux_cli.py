"""Issue 32: command-line messages a registry team meets in the first hour (each before -> after), the
Makefile's quiet recipes, and docs/outputs.md kept to the code's exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess

import pytest

from pipeline.cli import main
from pipeline.core.errors import EXIT_CODES
from tests.conftest import ROOT

SAMPLE = ROOT / "data_samples" / "default"
REGIONAL = ROOT / "data_samples" / "regional"


def cli(*argv) -> tuple[int, str, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def run(tmp_path, *extra):
    return cli("run", "--input", SAMPLE, "--out", tmp_path / "out", "--no-cache", "--force", *extra)


def test_input_given_as_a_file_names_the_folder(tmp_path):
    # before: "patients.csv: is not an export folder (no such directory)"
    rc, _, err = cli("run", "--input", SAMPLE / "patients.csv", "--out", tmp_path / "o", "--no-cache")
    assert rc == 1
    assert "is a file, not an export folder" in err and f"--input {SAMPLE}" in err
    assert "no such directory" not in err
    rc, _, err = cli("run", "--input", tmp_path / "nothing", "--out", tmp_path / "o", "--no-cache")
    assert rc == 1 and "no such directory" in err


def test_set_value_of_the_wrong_type_shows_the_current_value(tmp_path):
    # before: "--set edss_range.max_edss=seven: 'seven' is not a valid float"
    rc, _, err = run(tmp_path, "--set", "edss_range.max_edss=seven")
    assert rc == 2
    assert "'seven' is not a number" in err and "edss_range.max_edss is 6.5 in this trial" in err
    assert "valid float" not in err


@pytest.mark.parametrize("trials", [["--trial", "all"], []])
def test_set_without_the_criterion_names_it(tmp_path, trials):
    # before (--trial all): "none of the trials ... has criterion 'max_edss' with a parameter ''"
    rc, _, err = run(tmp_path, *trials, "--set", "max_edss=7")
    assert rc == 2
    assert "give the criterion too" in err and "edss_range.max_edss=7" in err
    assert "with a parameter ''" not in err


@pytest.mark.parametrize("item,scale,bound", [
    ("edss_range.max_edss=12", "EDSS", "lets everyone through"), ("edss_range.min_edss=-1", "EDSS", "lets everyone"),
    ("karnofsky.min_karnofsky=120", "Karnofsky index", "lets nobody"), ("adult.min_age=130", "age", "lets nobody"),
    ("lvef.min_lvef=101", "LVEF", "lets nobody"), ("pulmonary_function.min_fev1=300", "% of predicted", "lets nobody")])
def test_set_off_a_known_scale_is_a_warning_and_the_run_goes_on(tmp_path, item, scale, bound):
    # before: accepted silently. A warning, not an error: the workbench's sliders run past the scale's ends
    # ("no limit", "nobody") and every command the page gives must run.
    rc, _, err = run(tmp_path, "--set", item)
    assert rc == 0, err
    (line,) = [x for x in err.splitlines() if x.startswith("msfeas: warning: --set")]
    assert f"off the {scale} scale" in line and bound in line


def test_set_between_steps_is_a_warning_and_the_run_goes_on(tmp_path):
    # before: accepted silently
    rc, _, err = run(tmp_path, "--set", "edss_range.max_edss=6.3", "--set", "karnofsky.min_karnofsky=35",
                     "--set", "adult.min_age=19")
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("msfeas: warning: --set")]
    assert len(warnings) == 2, err  # an age needs no step
    assert "6.3 is not a step of the EDSS scale" in warnings[0] and "6 or 6.5" in warnings[0]
    assert "35 is not a step of the Karnofsky index scale" in warnings[1]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any("not a step of the EDSS scale" in w for w in summary["warnings"])  # and in the report
    assert "not a step of the EDSS scale" in (tmp_path / "out" / "report.html").read_text()
    rc, _, err = run(tmp_path, "--set", "edss_range.max_edss=6.5", "--set", "edss_range.min_edss=none")
    assert rc == 0 and "warning: --set" not in err


def test_scales_come_from_where_the_rule_uses_each_parameter():
    from pipeline.criteria import load_trial
    from pipeline.criteria.load import AGE, EDSS, KARNOFSKY, _scales
    t = load_trial("nct04203017")
    by = {c.id: _scales(c.rule) for c in t.criteria}
    assert by["edss_range"] == {"min_edss": EDSS, "max_edss": EDSS}
    assert by["karnofsky"] == {"min_karnofsky": KARNOFSKY}
    assert by["adult"]["min_age"] == AGE
    assert by["progression_on_therapy"]["increase_step_edss"] == EDSS
    assert "lookback_days" not in by["edss_range"]
    h = {c.id: _scales(c.rule) for c in load_trial("nct04411641").criteria}
    assert h["disease_duration_by_edss"]["edss_step"] == EDSS


def test_as_of_before_the_data_is_a_warning(tmp_path):
    # before: counted 2,000 patients without a word
    rc, _, err = run(tmp_path, "--as-of", "1960-01-01")
    assert rc == 0 and "is before the export's first record (1966-10-14)" in err
    rc, _, err = run(tmp_path, "--as-of", "1990-01-01")
    assert rc == 0 and re.search(r"--as-of 1990-01-01: [\d,]+ of 2,000 patients were born or diagnosed after it", err)
    rc, _, err = run(tmp_path, "--as-of", "2026-11-01")
    assert rc == 0 and "--as-of" not in err


def test_regional_export_without_export_toml_gets_the_whole_file_in_one_message(tmp_path):
    # before: four round trips (delimiter, date format, decimal mark, encoding), one setting each
    folder = tmp_path / "regional"
    shutil.copytree(REGIONAL, folder)
    (folder / "export.toml").unlink()
    rc, _, err = cli("run", "--input", folder, "--out", tmp_path / "o", "--no-cache")
    assert rc == 1
    line = err.splitlines()[0]
    cmd = re.search(r"(printf .*) > (\S+export\.toml)$", line)
    assert cmd, line
    assert "delimiter ';', decimal ',', date_format '%d.%m.%Y', encoding 'cp1251'" in line
    subprocess.run(f"{cmd.group(1)} > {cmd.group(2)}", shell=True, check=True)
    import tomllib
    assert tomllib.loads((folder / "export.toml").read_text()) == tomllib.loads((REGIONAL / "export.toml").read_text())
    rc, _, err = cli("run", "--input", folder, "--out", tmp_path / "o", "--no-cache")
    assert rc == 0, err


def test_sniff_finds_the_default_dialect_and_says_its_doubts(tmp_path):
    from pipeline.core.dialect import Dialect, sniff
    got, doubts = sniff([SAMPLE / "patients.csv", SAMPLE / "visits.csv"])
    assert got == Dialect() and doubts == []
    (tmp_path / "p.csv").write_text("patient_id\tsite_id\tbirth_date\nP1\tS\t01/02/1970\nP2\tS\t03/04/1980\n")
    got, doubts = sniff([tmp_path / "p.csv"])
    assert got.delimiter == "\t" and got.date_format == "%d/%m/%Y" and doubts and "%m/%d/%Y" in doubts[0]


def test_make_help_is_aligned_and_recipes_are_silent():
    make = (ROOT / "Makefile").read_text()
    out = subprocess.run(["make", "-s", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert len(out) >= 10
    starts = {len(re.match(r"  make \S+\s+", line).group(0)) for line in out}
    assert len(starts) == 1, out  # every description starts in the same column
    recipes = [line for line in make.splitlines() if line.startswith("\t") and not line.startswith("\t  ")
               and not line.startswith("\t'")]
    assert recipes and all(line.startswith("\t@") for line in recipes), [r for r in recipes if not r.startswith("\t@")]
    run_recipe = make.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "open $(RUN_DIR)/report.html" in run_recipe.splitlines()[-1]


def test_readme_first_paragraph_names_the_three_bundled_trials():
    first = (ROOT / "README.md").read_text().split("\n\n")[1]
    for trial in ("NCT04203017", "NCT04047628", "NCT04411641"):
        assert trial in first


def test_docs_exit_codes_match_the_code_and_help():
    doc = (ROOT / "docs" / "outputs.md").read_text()
    table = doc.split("Exit codes (", 1)[1].split("\n\n", 2)[1]
    rows = [re.match(r"\| (\d+) \| (.+) \|$", line) for line in table.splitlines()[2:]]
    assert all(rows), table
    assert [(int(m.group(1)), m.group(2)) for m in rows] == list(EXIT_CODES.items())
    from pipeline.cli import build_parser
    helps = [build_parser().format_help()]
    rc, out, _ = cli("nightly", "--help")
    helps.append(out)
    rc, out, _ = cli("run", "--help")
    helps.append(out)
    for text in helps:
        for code, meaning in EXIT_CODES.items():
            assert re.search(rf"^\s+{code}\s+{re.escape(meaning)}$", text, re.M), (code, text[-800:])
    for engine in ("polars", "duckdb", "spark"):
        assert engine in doc.split("## The run folder")[0]
    readme = (ROOT / "README.md").read_text()
    nightly_table = readme.split("Exit codes of `msfeas nightly`:", 1)[1].split("\n\n", 2)[1]
    assert {int(c) for c in re.findall(r"^\| (\d+) \|", nightly_table, re.M)} == set(EXIT_CODES)
