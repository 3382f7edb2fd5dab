"""Strict types (docs/trial-language.md section 5) and suggestions in every "unknown X" message.

A value in a trial file is written as its type: a number without quotes, a list as a list, none
as exactly "none". The loose forms (`at_most = "0"`, `max_uln = "1.5"`, `within_days = "None"`,
`pass = "RRMS,SPMS"`) are errors naming the field. `--set` still converts the command line's text.
"""

from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.core.errors import UsageError, suggest
from pipeline.criteria.load import load_trial, parse_trial

HEAD = 'id = "t"\ntitle = "T"\n'


def criterion(rule: str, parameters: str = "") -> str:
    params = f"parameters = {{ {parameters} }}\n" if parameters else ""
    return f'[[criteria]]\nid = "c1"\nkind = "inclusion"\ntext = "x"\n{params}rule = {rule}\n'


def error(rule: str, parameters: str = "") -> str:
    with pytest.raises(UsageError) as err:
        parse_trial(HEAD + criterion(rule, parameters), "t.toml")
    return str(err.value)


LAB = '{ type = "lab_uln", test = "ALT", lookback_days = 90, max_uln = MAX, default_uln = 40.0, as = "alt" }'

STRICT = {
    "text for an int": ('{ type = "count", table = "relapses", at_most = "0" }', "",
                        "rule.at_most: '0' is not a valid int: a whole number is expected; write 0 without quotes"),
    "text for a number": (LAB.replace("MAX", '"1.5"'), "",
                          "rule.max_uln: '1.5' is not a valid number: a number is expected; write 1.5 without quotes"),
    "text for a number in a where": ('{ type = "count", table = "visits", where = { edss = { min = "3.0" } }, '
                                     'at_most = 0 }', "", "rule.where.edss.min: '3.0' is not a valid number"),
    "text for an int in a parameter": ('{ type = "count", table = "relapses", at_most = "$n" }', 'n = "0"',
                                       "rule.at_most: '0' is not a valid int: a whole number is expected; write 0 "
                                       "without quotes (in parameters.n)"),
    "None capitalised": ('{ type = "count", table = "relapses", at_most = 0, within_days = "None" }', "",
                         "rule.within_days: 'None' is not a valid int: a whole number is expected; "
                         'write "none" in lower case'),
    "None in a parameter": ('{ type = "count", table = "relapses", at_most = 0, within_days = "$w" }', 'w = "NONE"',
                            'write "none" in lower case (in parameters.w)'),
    "none where none is not allowed": ('{ type = "count", table = "relapses", at_most = 0, distinct_dates = "none" }',
                                       "", "rule.distinct_dates: 'none' is not a valid bool"),
    "comma-joined list": ('{ type = "patient_code", column = "ms_course", pass = "RRMS,SPMS" }', "",
                          'rule.pass: \'RRMS,SPMS\' is not a valid str_list: a list of texts is expected; '
                          'write a list, ["RRMS", "SPMS"]'),
    "comma-joined list in a where": ('{ type = "count", table = "conditions", where = { code = { prefix = "C, D" } }, '
                                     'at_most = 0 }', "", 'rule.where.code.prefix: \'C, D\' is not a valid str_list'),
    "one text for a list": ('{ type = "count", table = "conditions", where = { code = { not_prefix = "C44" } }, '
                            'at_most = 0 }', "", 'write a list, ["C44"]'),
    "comma-joined int list": ('{ type = "confirmed_progression", lines = "1,2", lag_days = 90, '
                              'baseline_lookback_days = 180, late_baseline_days = 90, increase_below = 5.5, '
                              'increase_from = 1.0, increase_step_edss = 0.5, confirmation_days = 180, '
                              'relapse_exclusion_days = 30 }', "", "rule.lines: '1,2' is not a valid int_list"),
    "text for a bool": ('{ type = "count", table = "relapses", at_most = 0, distinct_dates = "true" }', "",
                        "rule.distinct_dates: 'true' is not a valid bool: true or false is expected; write true "
                        "without quotes"),
}


@pytest.mark.parametrize("name", list(STRICT))
def test_loose_values_are_errors_naming_the_field(name):
    rule, params, expected = STRICT[name]
    message = error(rule, params)
    assert message.startswith("t.toml: criterion 1 (c1): ")
    assert expected in message


def test_the_strict_forms_still_load_with_the_same_meaning():
    trial = parse_trial(HEAD + criterion('{ type = "count", table = "relapses", at_most = "$n", within_days = "$w" }',
                                         'n = 0, w = "none"'), "t.toml")
    assert trial.criteria[0].parameters == {"n": 0, "w": None}
    node = parse_trial(HEAD + criterion(LAB.replace("MAX", "1.5")), "t.toml").criteria[0].node
    assert node["max_uln"] == 1.5


def test_set_still_converts_the_command_lines_text():
    trial = load_trial("nct04203017", ["edss_range.max_edss=7", "ms_diagnosis.courses=RRMS,SPMS"])
    params = {c.id: c.parameters for c in trial.criteria}
    assert params["edss_range"]["max_edss"] == 7.0
    assert params["ms_diagnosis"]["courses"] == ["RRMS", "SPMS"]


def test_cli_exits_2_on_a_loose_value(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(HEAD + criterion(STRICT["None capitalised"][0]))
    code = main(["run", "--input", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--trial", str(bad)])
    assert code == 2
    assert "rule.within_days: 'None' is not a valid int" in capsys.readouterr().err


SUGGESTIONS = {
    "drug": ('{ type = "count", table = "treatments", where = { drug = ["natalizumabb"] }, at_most = 0 }',
             "unknown drug 'natalizumabb'", "did you mean 'natalizumab'"),
    "brand": ('{ type = "count", table = "treatments", where = { drug = ["Tysabryl"] }, at_most = 0 }',
              "unknown drug 'Tysabryl'", "did you mean 'tysabri'"),
    "code": ('{ type = "count", table = "conditions", where = { category = "malignant" }, at_most = 0 }',
             "unknown code 'malignant'", "did you mean 'malignancy'? codes: malignancy, infection"),
    "course code": ('{ type = "patient_code", column = "ms_course", pass = ["RRSM"] }',
                    "unknown code 'RRSM'", "did you mean 'RRMS'? codes: RRMS, SPMS, PPMS"),
    "column": ('{ type = "latest_value", table = "visits", column = "edds", lookback_days = 365, tie = "highest", '
               'as = "e" }', "no column 'edds' in visits", "did you mean 'edss'? columns: patient_id, visit_date"),
    "column in a where": ('{ type = "count", table = "conditions", where = { catgory = "malignancy" }, at_most = 0 }',
                          "no column 'catgory'", "did you mean 'category'?"),
    "table": ('{ type = "count", table = "relapse", at_most = 0 }', "no table 'relapse'",
              "did you mean 'relapses'? tables: patients, visits"),
    "node type": ('{ type = "latest" }', "unknown node type 'latest'", "did you mean 'latest_value'? known: screening"),
    "field": ('{ type = "count", table = "relapses", at_most = 0, within = 365 }', "count has no field 'within'",
              "did you mean 'within_days'? fields: table, where"),
    "predicate": ('{ type = "count", table = "conditions", where = { code = { starts_with = ["C"] } }, at_most = 0 }',
                  "unknown condition", "use one of: equals, in"),
}


@pytest.mark.parametrize("name", list(SUGGESTIONS))
def test_unknown_names_come_with_the_nearest_valid_ones(name):
    rule, what, hint = SUGGESTIONS[name]
    message = error(rule)
    assert what in message and hint in message


def test_unknown_criterion_and_parameter_in_set():
    with pytest.raises(UsageError, match=r"no criterion 'edss_rang'; did you mean 'edss_range'\? criteria: alive"):
        load_trial("nct04203017", ["edss_rang.max_edss=7"])
    with pytest.raises(UsageError, match=r"no parameter 'max_eds' \(did you mean 'max_edss'"):
        load_trial("nct04203017", ["edss_range.max_eds=7"])


def test_unknown_keys_suggest_the_right_spelling():
    with pytest.raises(UsageError, match=r"unknown key `planned_enrollment`; did you mean 'planned_enrolment'\?"):
        parse_trial(HEAD + "planned_enrollment = 20\n" + criterion('{ type = "screening" }'), "t.toml")
    with pytest.raises(UsageError, match=r"unknown key `parameter`; did you mean 'parameters'\?"):
        parse_trial(HEAD + criterion('{ type = "screening" }') + "parameter = {}\n", "t.toml")


def test_suggest_lists_all_of_a_short_list_and_a_few_of_a_long_one():
    assert suggest("xyz", ["a", "b"]) == "known: a, b"
    long = [f"name{i}" for i in range(50)]
    assert suggest("name7x", long).startswith("did you mean 'name7'")
    assert "name49" not in suggest("name7x", long)
    assert suggest("zzz", long) == "50 known, e.g. name0, name1, name2, name3, name4"


def test_an_unknown_bundled_trial_suggests_the_nearest():
    with pytest.raises(UsageError, match=r"neither a bundled trial id .* nor a trial file; did you mean 'nct04411641'"):
        load_trial("nct0441164")
