"""`msfeas trial check` (design checks, then data checks on an export), `trial show`, and the
zero-match warnings of a run (run.log, summary.json, report.html)."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline.cli import main
from tests.conftest import ROOT

SAMPLE = ROOT / "data_samples" / "default"
D = "2026-11-30"
HEAD = 'id = "t"\ntitle = "T"\n'


def criterion(cid: str, rule: str, kind: str = "inclusion") -> str:
    return f'[[criteria]]\nid = "{cid}"\nkind = "{kind}"\ntext = "x"\nrule = {rule}\n'


ALT = ('{ type = "lab_uln", test = "ALTT", lookback_days = 365, max_uln = 1.5, default_uln = 40.0, '
       'as = "alt_uln" }')
ADULT = '{ type = "age", min = 18 }'


def write(tmp_path, *criteria: str):
    path = tmp_path / "mytrial.toml"
    path.write_text(HEAD + "".join(criteria))
    return path


def check(capsys, *args):
    code = main(["trial", "check", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_design_only(tmp_path, capsys):
    code, out, _ = check(capsys, write(tmp_path, criterion("adult", ADULT)))
    assert code == 0
    assert "mytrial.toml: trial t, 1 criteria, 0 parameters: design checks passed" in out
    assert out.strip().endswith("0 warnings")


def test_a_design_error_exits_2(tmp_path, capsys):
    code, _, err = check(capsys, write(tmp_path, criterion("adult", '{ type = "age", minimum = 18 }')),
                         "--input", SAMPLE)
    assert code == 2
    assert "rule.minimum: age has no field 'minimum'; did you mean 'min'?" in err


def test_a_misspelt_test_is_a_warning_naming_criterion_and_value(tmp_path, capsys):
    code, out, _ = check(capsys, write(tmp_path, criterion("adult", ADULT), criterion("alt_normal", ALT)),
                         "--input", SAMPLE, "--as-of", D)
    assert code == 0
    assert ("warning: test 'ALTT' matches no row of labs.csv: alt_normal will be unknown for every patient"
            in out)
    assert "warning: alt_normal is unknown for every patient (2,000)" in out
    lines = out.splitlines()
    assert any(line.split()[:1] == ["criterion"] and "unknown" in line for line in lines)
    row = next(line for line in lines if line.startswith("alt_normal "))
    assert row.split()[1:] == ["0", "0", "2,000", "0"]
    adult = next(line for line in lines if line.startswith("adult "))
    assert sum(int(x.replace(",", "")) for x in adult.split()[1:]) == 2000
    assert out.strip().endswith("2 warnings")


def test_the_right_test_gives_no_warning(tmp_path, capsys):
    code, out, _ = check(capsys, write(tmp_path, criterion("alt_normal", ALT.replace("ALTT", "alt"))),
                         "--input", SAMPLE, "--as-of", D)
    assert code == 0 and "warning:" not in out and out.strip().endswith("0 warnings")


@pytest.mark.parametrize("rule, expected", [
    ('{ type = "count", table = "treatments", where = { drug = ["natalizumab", "ozanimod"] }, at_most = 0 }',
     "drug 'ozanimod' matches no row of treatments.csv: c counts no row through it (rule.where.drug.in)"),
    ('{ type = "count", table = "conditions", where = { code = { prefix = ["Q99", "Q98"] } }, at_most = 0 }',
     "code prefixes 'Q99', 'Q98' match no row of conditions.csv: c counts no row through it"),
    ('{ type = "count", table = "conditions", where = { code = { not_prefix = ["Q99"] } }, at_most = 0 }',
     "code prefix 'Q99' matches no row of conditions.csv: the exclusion at rule.where.code.not_prefix of c "
     "excludes nothing"),
    ('{ type = "count", table = "function_tests", where = { test = "DLCO" }, at_most = 0, within_days = 1 }',
     None),
])
def test_each_value_a_filter_names_is_counted(tmp_path, capsys, rule, expected):
    code, out, _ = check(capsys, write(tmp_path, criterion("c", rule)), "--input", SAMPLE, "--as-of", D)
    assert code == 0
    if expected is None:
        assert "matches no row" not in out
    else:
        assert f"warning: {expected}" in out


def test_an_absent_table_makes_a_criterion_unknown_for_everyone(tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(SAMPLE / "patients.csv", export)
    code, out, _ = check(capsys, write(tmp_path, criterion("alt_normal", ALT.replace("ALTT", "ALT"))),
                         "--input", export, "--as-of", D)
    assert code == 0
    assert "warning: alt_normal is unknown for every patient (2,000): it reads labs, absent from the export" in out
    assert "absent tables: " in out and "labs" in out


def test_a_window_longer_than_the_exports_dates(tmp_path, capsys):
    rule = '{ type = "count", table = "relapses", within_days = 36500, at_most = 3 }'
    code, out, _ = check(capsys, write(tmp_path, criterion("few_relapses", rule)), "--input", SAMPLE, "--as-of", D)
    assert code == 0
    assert "warning: few_relapses: rule.within_days = 36500 looks back to 1926-12-25, but the dates of " \
           "relapses.csv begin on" in out
    code, out, _ = check(capsys, write(tmp_path, criterion("few_relapses", rule.replace("36500", "365"))),
                         "--input", SAMPLE, "--as-of", D)
    assert "looks back" not in out


def test_an_unreadable_export_exits_1(tmp_path, capsys):
    code, _, err = check(capsys, write(tmp_path, criterion("adult", ADULT)), "--input", tmp_path / "empty-dir-x")
    assert code == 2 and "not an export folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = check(capsys, write(tmp_path, criterion("adult", ADULT)), "--input", tmp_path / "empty")
    assert code == 1 and "patients" in err


def test_show_prints_a_bundled_trial(capsys):
    assert main(["trial", "show", "nct04047628"]) == 0
    assert capsys.readouterr().out == (ROOT / "pipeline" / "trials" / "nct04047628.toml").read_text()
    assert main(["trial", "show", "nct0404762"]) == 2
    assert "did you mean 'nct04047628'" in capsys.readouterr().err


def test_a_run_logs_and_reports_the_zero_matches(tmp_path, capsys):
    trial = write(tmp_path, criterion("adult", ADULT), criterion("alt_normal", ALT))
    trial.write_text(trial.read_text().replace('title = "T"\n', 'title = "T"\nplanned_enrolment = 1234\n'))
    out = tmp_path / "run"
    code = main(["run", "--input", str(SAMPLE), "--out", str(out), "--trial", str(trial), "--as-of", D,
                 "--no-cache"])
    assert code == 0
    expected = "test 'ALTT' matches no row of labs.csv: alt_normal will be unknown for every patient"
    assert f"msfeas: warning: {expected}" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data_warnings"] == [expected]
    assert summary["warnings"] == []
    events = [json.loads(line) for line in (out / "run.log").read_text().splitlines()]
    assert any(e.get("level") == "warning" and expected in json.dumps(e) for e in events)
    report = (out / "report.html").read_text()
    assert expected.replace("'", "&#39;") in report
    assert summary["planned_enrolment"] == 1234  # issue 31: in summary.json and the report
    assert '<span id="planned-enrolment">planned enrolment 1,234</span>' in report


def test_an_empty_table_is_one_warning_and_a_run_prints_at_most_five(tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(SAMPLE / "patients.csv", export)
    (export / "labs.csv").write_text((SAMPLE / "labs.csv").read_text().splitlines()[0] + "\n")
    bad = [criterion(f"lab{i}", ALT.replace("ALTT", f"XX{i}").replace("alt_uln", f"x{i}")) for i in range(7)]
    code, out, _ = check(capsys, write(tmp_path, *bad), "--input", export, "--as-of", D)
    assert code == 0
    assert "warning: labs.csv has no accepted rows: the filters of lab0, lab1, lab2, lab3, lab4, lab5, lab6 " \
           "select nothing" in out
    assert "matches no row" not in out
    run = tmp_path / "run"
    assert main(["run", "--input", str(SAMPLE), "--out", str(run), "--trial", str(tmp_path / "mytrial.toml"),
                 "--as-of", D, "--no-cache"]) == 0
    err = capsys.readouterr().err
    assert err.count("matches no row of labs.csv") == 5
    assert "and 2 more values matching no row (summary.json data_warnings)" in err
    assert len(json.loads((run / "summary.json").read_text())["data_warnings"]) == 7
