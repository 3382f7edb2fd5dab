"""`msfeas trial import RECORD.json`: a ClinicalTrials.gov API v2 record to a trial file to finish.

The fixtures in tests/fixtures/ctgov/ reproduce the record shapes: headings with and without
colons, in capitals, "Key ..." and per cohort; `*`, `-` and numbered bullets; nested bullets;
wrapped lines; Markdown escapes; several cohorts; ages in years, in months, absent or N/A;
sex ALL / FEMALE / MALE; healthy volunteers. `nct04410978.json` is built from GEMINI 1's
published inclusion criteria, and `nct04410978.toml` is the trial file finished from its import.
"""

from __future__ import annotations

import json
import tomllib

import pytest

from pipeline.authoring.ctgov import age_years, import_record, parse_criteria, unescape
from pipeline.cli import main
from pipeline.core.errors import UsageError
from pipeline.criteria.load import parse_trial
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "ctgov"


def imported(name: str):
    result = import_record(FIXTURES / f"{name}.json")
    trial = parse_trial(result.text, f"{name}.toml")  # the import always loads: design checks pass
    return result, tomllib.loads(result.text), trial


def crit(data, cid):
    return next(c for c in data["criteria"] if c["id"] == cid)


def test_basic_record_field_by_field():
    result, data, trial = imported("basic")
    assert data["id"] == "nct09000001" and data["registration"] == "NCT09000001"
    assert data["title"] == "Basic record: headings with colons, star bullets, escapes"
    assert data["planned_enrolment"] == 900
    assert result.text.startswith("#:schema ")
    assert "# official title: A Phase 3 Study of Something in Relapsing MS" in result.text
    assert crit(data, "age")["rule"] == {"type": "age", "min": 18, "max": 55}
    assert "# no sex criterion: the record's sex is ALL" in result.text
    assert [c["id"] for c in data["criteria"]] == [
        "age", "in01_diagnosis_relapsing_remitting_ms", "in02_edss_score_2_0", "in03_least_1_relapse_12",
        "ex01_treatment_natalizumab_ocrevus_6", "ex02_alt_ast_3_x", "ex03_history_malignancy_icd_10",
        "ex04_pregnant_breast_feeding_women", "ex05_known_hypersensitivity_component_study"]
    assert [c["kind"] for c in data["criteria"]] == ["inclusion"] * 4 + ["exclusion"] * 5
    assert crit(data, "in02_edss_score_2_0")["text"] == "EDSS score >= 2.0 and <= 5.5 at screening"
    assert crit(data, "ex05_known_hypersensitivity_component_study")["text"] == \
        "Known hypersensitivity to *any* component of the study drug [see protocol]"
    assert all(c["rule"] == {"type": "screening"} for c in data["criteria"][1:])
    assert result.warnings == []
    assert [c.node.type for c in trial.criteria] == ["age"] + ["screening"] * 8


def test_suggestions_are_comments_never_rules():
    result, _, _ = imported("basic")
    text = result.text
    assert '# suggestion: latest_value on visits.edss' in text and "(values in the text: 2.0, 5.5)" in text
    assert "12 months = 365 days" in text
    assert 'where = { drug = ["natalizumab", "ocrelizumab"] }' in text and "6 months = 183 days" in text
    assert 'test = "ALT", lookback_days = ..., max_uln = 3.0' in text
    assert 'code = { prefix = ["C00", "C97", "C44.9"] }' in text
    for line in text.splitlines():
        if "suggestion" in line:
            assert line.startswith("# ")


def test_numbered_nested_wrapped_and_months():
    result, data, _ = imported("numbered")
    assert data["planned_enrolment"] == 120
    assert "age" not in [c["id"] for c in data["criteria"]]
    months = crit(data, "age_min")
    assert months["rule"] == {"type": "screening"} and months["text"].startswith("minimumAge: 30 Months")
    assert any("30 Months is not a whole number of years" in w for w in result.warnings)
    assert crit(data, "female")["rule"] == {"type": "patient_code", "column": "sex", "pass": ["F"],
                                             "missing": "unknown"}
    assert crit(data, "in02_active_disease_defined_either")["text"] == (
        "Active disease, defined as either: (a) 2 relapses in the last 2 years, or "
        "(b) 1 gadolinium-enhancing lesion on MRI in the last year")
    assert crit(data, "in03_able_give_informed_consent")["text"] == \
        "Able to give informed consent and to comply with the protocol"
    kinds = {c["id"]: c["kind"] for c in data["criteria"]}
    assert kinds["ex01_primary_progressive_ms"] == "exclusion"  # "Key Exclusion Criteria:"
    assert kinds["in01_women_aged_30_months"] == "inclusion"  # "INCLUSION CRITERIA" without a colon
    assert 'pass = ["PPMS"]' in result.text


def test_cohorts_no_ages_healthy_volunteers():
    result, data, _ = imported("cohorts")
    assert "planned_enrolment" not in data
    assert "# no age criterion: the record gives neither minimumAge nor maximumAge" in result.text
    assert crit(data, "male")["rule"]["pass"] == ["M"]
    ids = [c["id"] for c in data["criteria"]]
    assert ids == ["male", "c1_in01_rrms_edss_0_4", "c1_in02_no_relapse_30_days", "c2_in03_healthy_adult",
                   "c2_in04_body_mass_index_18", "ex01_infection_requiring_antibiotics_last", "ex02_hepatitis_b_b18_1"]
    assert "# cohort: Cohort A (RRMS)" in result.text and "# cohort: Cohort B (healthy volunteers)" in result.text
    assert any("healthy volunteers" in w and "wrong tool" in w for w in result.warnings)
    assert any("2 cohorts" in w for w in result.warnings)
    assert "# WARNING: this trial accepts healthy volunteers" in result.text


def test_no_headings_no_bullets_and_na_age():
    result, data, _ = imported("bare")
    assert crit(data, "age")["rule"] == {"type": "age", "min": 18}
    texts = [c["text"] for c in data["criteria"][1:]]
    assert texts == ["Adults with MS who can walk 100 metres.", "No other autoimmune disease."]
    assert result.text.count("inclusion assumed") == 2


def test_real_record_gemini_1_and_its_finished_file():
    result, data, _ = imported("nct04410978")
    assert data["id"] == "nct04410978" and data["planned_enrolment"] == 900
    assert "# acronym: GEMINI 1" in result.text
    assert crit(data, "in03_expanded_disability_status_scale")["text"].endswith("score <=5.5 at the first "
                                                                                 "Screening Visit")
    finished = tomllib.loads((FIXTURES / "nct04410978.toml").read_text())
    by_id = {c["id"]: c for c in data["criteria"]}
    for c in finished["criteria"]:  # the finished file keeps the import's ids and texts
        assert by_id[c["id"]]["text"] == c["text"] and by_id[c["id"]]["kind"] == c["kind"]


def test_parser_pieces():
    assert unescape(r"EDSS \>= 2.0 \<= 5.5 \*x\* \[y\]") == "EDSS >= 2.0 <= 5.5 *x* [y]"
    assert age_years("18 Years", "w") == (18, None)
    assert age_years("24 Months", "w") == (2, None)
    assert age_years(None, "w") == (None, None) and age_years("N/A", "w") == (None, None)
    assert age_years("6 Weeks", "w")[0] is None
    with pytest.raises(UsageError, match="is not an age"):
        age_years("eighteen", "w")
    items = parse_criteria("**Inclusion Criteria:**\n\n1. one\n2. two\n\n## Exclusion criteria\n\n- three")
    assert [(i.kind, i.text) for i in items] == [("inclusion", "one"), ("inclusion", "two"), ("exclusion", "three")]


def test_cli_import_writes_a_file_that_checks(tmp_path, capsys):
    out = tmp_path / "nct09000001.toml"
    assert main(["trial", "import", str(FIXTURES / "basic.json"), "--out", str(out)]) == 0
    assert main(["trial", "check", str(out)]) == 0
    assert "design checks passed" in capsys.readouterr().out
    assert main(["trial", "import", str(FIXTURES / "basic.json"), "--out", str(out)]) == 2  # no overwrite


@pytest.mark.parametrize("content, expected", [
    ("{not json", "not a JSON file"),
    (json.dumps({"protocolSection": {}}), "not a ClinicalTrials.gov API v2 study record"),
    (json.dumps({"protocolSection": {"identificationModule": {"nctId": "X1"}}}), "is not an NCT number"),
])
def test_bad_records_exit_2(tmp_path, capsys, content, expected):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["trial", "import", str(bad)]) == 2
    assert expected in capsys.readouterr().err


def test_intro_lines_disclaimers_and_spaced_headings():
    text = ("Inclusion criteria :\n\nParticipants are eligible only if all of the following apply:\n\n"
            "- one\n- two\n  continued\n\nA note after the list.\n\nExclusion criteria:\n\n"
            "Participants are excluded if any of the following apply:\n\n- three\n\n"
            "The above information is not intended to contain all considerations relevant to a patient's "
            "potential participation in a clinical trial.\n")
    items = parse_criteria(text)
    assert [(i.kind, i.text, i.note) for i in items] == [
        ("inclusion", "one", "Participants are eligible only if all of the following apply:"),
        ("inclusion", "two continued", None),
        ("inclusion", "A note after the list.", None),
        ("exclusion", "three", "Participants are excluded if any of the following apply:")]
