"""A trial file is checked before any data is read: each mistake gets its own message naming
the file, the criterion and the field, and `msfeas run` exits with code 2."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.core.errors import UsageError
from pipeline.criteria.load import load_trial, parse_trial
from tests.conftest import ROOT

HEAD = 'id = "t"\ntitle = "T"\n'


def criterion(rule: str, parameters: str = "", cid: str = "c1") -> str:
    params = f"parameters = {{ {parameters} }}\n" if parameters else ""
    return f'[[criteria]]\nid = "{cid}"\nkind = "inclusion"\ntext = "x"\n{params}rule = {rule}\n'


LATEST = ('{ type = "latest_value", table = "visits", column = "edss", lookback_days = 365, tie = "highest", '
          'max = 6.5, as = "edss" }')

BAD = {
    "unknown node type": (criterion('{ type = "latest" }'), "rule.type: unknown node type 'latest'"),
    "unknown field": (criterion('{ type = "age", min = 18, maximum = 60 }'), "rule.maximum: age has no field 'maximum'"),
    "missing field": (criterion('{ type = "latest_value", table = "visits", column = "edss", tie = "highest", as = "e" }'),
                      "rule.lookback_days: latest_value needs `lookback_days`"),
    "unknown table": (criterion('{ type = "count", table = "scans", at_most = 0 }'), "rule.table: no table 'scans'"),
    "unknown column": (criterion(LATEST.replace('"edss", lookback', '"eds", lookback')), "rule.column: no column 'eds' in visits"),
    "unknown code": (criterion('{ type = "count", table = "conditions", where = { category = "malignant" }, at_most = 0 }'),
                     "rule.where.category.equals: unknown code 'malignant' for conditions.category"),
    "unknown filter": (criterion('{ type = "count", table = "conditions", where = { code = { like = "C" } }, at_most = 0 }'),
                       "rule.where.code.like: unknown condition"),
    "wrong type": (criterion(LATEST.replace("lookback_days = 365", 'lookback_days = "a year"')),
                   "rule.lookback_days: 'a year' is not a valid int"),
    "negative window": (criterion(LATEST.replace("lookback_days = 365", "lookback_days = -1")),
                        "rule.lookback_days: must not be negative, not -1"),
    "min above max": (criterion(LATEST.replace("max = 6.5", "min = 7.0, max = 6.5")),
                      "rule.min: min 7.0 is greater than max 6.5"),
    "bad tie": (criterion(LATEST.replace('"highest"', '"worst"')), "rule.tie: 'worst' is not highest or lowest"),
    "undefined parameter": (criterion('{ type = "age", min = "$min_age" }'),
                            "rule.min: refers to parameter $min_age, which `parameters` does not define"),
    "unused parameter": (criterion('{ type = "age", min = 18 }', "max_age = 60"),
                         "parameters.max_age: is defined but no node refers to it"),
    "duplicate evidence": (criterion(f'{{ type = "all", of = [{LATEST}, {LATEST}] }}'),
                           "rule: two nodes name their evidence 'edss'"),
    "nested screening": (criterion('{ type = "not", rule = { type = "screening" } }'),
                         "rule.rule: screening can only be a criterion's whole rule"),
    "not a dated table": (criterion(LATEST.replace('table = "visits", column = "edss"', 'table = "patients", column = "sex"')),
                          "rule.table: latest_value needs a table of dated events"),
    "text column for a value": (criterion(LATEST.replace('column = "edss"', 'column = "patient_id"')),
                                "rule.column: column visits.patient_id is str; this needs float or int"),
    "empty all": (criterion('{ type = "all", of = [] }'), "rule.of: needs at least one sub-criterion"),
    "unknown kind": (criterion('{ type = "screening" }').replace('"inclusion"', '"inclusive"'), "kind must be one of"),
    "unknown criterion key": (criterion('{ type = "screening" }') + 'judged = "x"\n', "unknown key `judged`"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_each_mistake_has_its_own_message(name):
    body, expected = BAD[name]
    with pytest.raises(UsageError) as err:
        parse_trial(HEAD + body, "bad.toml")
    assert "bad.toml: criterion 1 (c1): " in str(err.value)
    assert expected in str(err.value)


def test_duplicate_criterion_ids():
    text = HEAD + criterion('{ type = "screening" }') + criterion('{ type = "screening" }')
    with pytest.raises(UsageError, match=r"bad.toml: criterion 2 \(c1\): duplicate id 'c1'"):
        parse_trial(text, "bad.toml")


def test_a_parameter_used_as_two_types():
    body = criterion('{ type = "all", of = [{ type = "age", min = "$x" }, '
                     '{ type = "count", table = "relapses", at_least = 1, as = "$x" }] }', "x = 3")
    with pytest.raises(UsageError, match=r"rule.of\[1\].as: parameter \$x is used as str\? here and as int\? elsewhere"):
        parse_trial(HEAD + body, "bad.toml")


def test_set_is_checked_like_the_file():
    with pytest.raises(UsageError, match=r"--set edss_range.min_edss=7: rule.min: min 7.0 is greater than max 6.5"):
        load_trial("nct04203017", ["edss_range.min_edss=7"])
    with pytest.raises(UsageError, match="must not be negative"):
        load_trial("nct04203017", ["lvef.lookback_days=-5"])
    with pytest.raises(UsageError, match="no parameter 'max'"):
        load_trial("nct04203017", ["edss_range.max=7"])


def test_cli_exits_2_before_reading_data(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(HEAD + BAD["unknown code"][0])
    code = main(["run", "--input", str(tmp_path / "no-such-export"), "--out", str(tmp_path / "out"),
                 "--trial", str(bad)])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.toml: criterion 1 (c1): rule.where.category.equals: unknown code 'malignant'" in err
    assert not (tmp_path / "out").exists()


def test_codes_are_folded_to_the_contract_case():
    body = criterion('{ type = "count", table = "conditions", where = { category = "Malignancy", '
                     'controlled = "n" }, at_most = 0 }')
    node = parse_trial(HEAD + body, "t.toml").criteria[0].node
    assert node["where"] == {"category": {"equals": "malignancy"}, "controlled": {"equals": "N"}}


def test_bundled_trials_load():
    for path in sorted((ROOT / "pipeline" / "trials").glob("*.toml")):
        assert load_trial(str(path)).criteria


def test_lists_on_decimal_columns_and_unknown_drugs_are_design_errors():
    with pytest.raises(UsageError, match=r"rule.where.edss.in: visits.edss is a decimal number: use min/max"):
        parse_trial(HEAD + criterion('{ type = "count", table = "visits", where = { edss = ["6.5"] }, at_most = 0 }'),
                    "bad.toml")
    with pytest.raises(UsageError, match=r"rule.where.drug.in: unknown drug 'Tysabryl'"):
        parse_trial(HEAD + criterion('{ type = "count", table = "treatments", where = { drug = ["Tysabryl"] }, '
                                     'at_most = 0 }'), "bad.toml")


def test_unknown_top_level_key():
    with pytest.raises(UsageError, match=r"bad.toml: unknown key `planned_enrollment`"):
        parse_trial(HEAD + "planned_enrollment = 20\n" + criterion('{ type = "screening" }'), "bad.toml")


def test_values_are_folded_as_the_tables_hold_them():
    body = criterion('{ type = "all", of = [{ type = "count", table = "treatments", where = { drug = ["Tysabri", '
                     '"interferon beta-1a"] }, at_most = 0 }, { type = "count", table = "conditions", where = '
                     '{ category = { prefix = ["Malig"] } }, at_most = 0 }, { type = "lab_uln", test = "ast", '
                     'lookback_days = 90, max_uln = 5.0, default_uln = 40.0, as = "ast" }] }')
    a, b, c = parse_trial(HEAD + body, "t.toml").criteria[0].node.children
    assert a["where"] == {"drug": {"in": ["natalizumab", "interferon_beta_1a"]}}
    assert b["where"] == {"category": {"prefix": ["malig"]}}
    assert c["test"] == "AST"
