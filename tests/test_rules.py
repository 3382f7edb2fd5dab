"""Each criterion at its boundaries (just in, just out, missing, same-day ties, after D), on both engines.

One export holds a patient per case; the patient id names the case and the expected
status, e.g. `edss_in` must `pass` edss_range. Each case is asserted on both engines.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tests.conftest import evaluate_export, status_of, write_export

D = dt.date(2024, 6, 30)


def p(pid, **kw):
    base = {"patient_id": pid, "site_id": "S1", "sex": "F", "birth_date": "1980-01-01", "onset_date": "2015-01-01",
            "ms_course": "RRMS", "research_consent": "Y"}
    return base | kw


# (criterion, patient row, rows of other tables, expected status)
CASES = {
    "alive": [
        ("alive_dead_on_d", {"death_date": "2024-06-30"}, {}, "fail"),
        ("alive_dead_after_d", {"death_date": "2024-07-01"}, {}, "pass"),
        ("alive_no_death", {}, {}, "pass"),
    ],
    "adult": [
        ("adult_18_today", {"birth_date": "2006-06-30"}, {}, "pass"),
        ("adult_18_tomorrow", {"birth_date": "2006-07-01"}, {}, "fail"),
        ("adult_no_birth", {"birth_date": None}, {}, "unknown"),
        ("adult_leap_birthday", {"birth_date": "2004-02-29"}, {}, "pass"),
    ],
    "ms_diagnosis": [
        ("course_spms", {"ms_course": "spms"}, {}, "pass"),
        ("course_cis", {"ms_course": "CIS"}, {}, "fail"),
        ("course_unknown", {"ms_course": None}, {}, "unknown"),
    ],
    "informed_consent": [
        ("consent_n", {"research_consent": "n"}, {}, "fail"),
        ("consent_empty", {"research_consent": None}, {}, "unknown"),
    ],
    "edss_range": [
        ("edss_65", {}, {"visits": [("2024-06-30", {"edss": "6.5"})]}, "pass"),
        ("edss_70", {}, {"visits": [("2024-06-30", {"edss": "7.0"})]}, "fail"),
        ("edss_366_days", {}, {"visits": [("2023-06-29", {"edss": "3.0"})]}, "unknown"),
        ("edss_365_days", {}, {"visits": [("2023-07-01", {"edss": "3.0"})]}, "pass"),
        ("edss_after_d", {}, {"visits": [("2024-07-01", {"edss": "3.0"}), ("2024-01-01", {"edss": "7.0"})]}, "fail"),
        ("edss_same_day_worst", {}, {"visits": [("2024-05-01", {"edss": "3.0"}), ("2024-05-01", {"edss": "7.0"})]}, "fail"),
        ("edss_latest_wins", {}, {"visits": [("2024-01-01", {"edss": "7.0"}), ("2024-05-01", {"edss": "3.0"})]}, "pass"),
        ("edss_none", {}, {"visits": [("2024-05-01", {"karnofsky": "80"})]}, "unknown"),
    ],
    "disease_duration": [
        # 20 * 365.25 = 7305 days: just under and exactly 20 years.
        ("dur_under_20", {"onset_date": (D - dt.timedelta(days=7304)).isoformat()}, {}, "pass"),
        ("dur_20", {"onset_date": (D - dt.timedelta(days=7305)).isoformat()}, {}, "fail"),
        ("dur_diag_old", {"onset_date": None, "diagnosis_date": "2000-01-01"}, {}, "fail"),
        ("dur_diag_recent", {"onset_date": None, "diagnosis_date": "2020-01-01"}, {}, "unknown"),
        ("dur_none", {"onset_date": None}, {}, "unknown"),
    ],
    "no_second_tumor": [
        ("tumor_melanoma_ended", {}, {"conditions": [{"category": "malignancy", "code": "C43.9", "onset_date": "2010-01-01", "end_date": "2011-01-01"}]}, "fail"),
        ("tumor_skin_c44", {}, {"conditions": [{"category": "malignancy", "code": "c44.9"}]}, "pass"),
        ("tumor_after_d", {}, {"conditions": [{"category": "malignancy", "code": "C50.9", "onset_date": "2024-07-01"}]}, "pass"),
        ("tumor_no_code", {}, {"conditions": [{"category": "malignancy"}]}, "fail"),
    ],
    "no_severe_illness": [
        ("severe_active", {}, {"conditions": [{"category": "cardiac", "severity": "severe", "end_date": "2024-06-30"}]}, "fail"),
        ("severe_ended", {}, {"conditions": [{"category": "cardiac", "severity": "SEVERE", "end_date": "2024-06-29"}]}, "pass"),
        ("moderate_active", {}, {"conditions": [{"category": "cardiac", "severity": "moderate"}]}, "pass"),
    ],
    "lvef": [
        ("lvef_50", {}, {"function_tests": [("2024-06-01", {"test": "LVEF", "value": "50"})]}, "pass"),
        ("lvef_49_9", {}, {"function_tests": [("2024-06-01", {"test": "lvef", "value": "49.9"})]}, "fail"),
        ("lvef_tie_lowest", {}, {"function_tests": [("2024-06-01", {"test": "LVEF", "value": "60"}), ("2024-06-01", {"test": "LVEF", "value": "45"})]}, "fail"),
        ("lvef_none", {}, {"function_tests": [("2024-06-01", {"test": "FEV1", "value": "80"})]}, "unknown"),
    ],
    "pulmonary_function": [
        ("pulm_both_70", {}, {"function_tests": [("2024-06-01", {"test": "FEV1", "value": "70"}), ("2024-05-01", {"test": "DLCO", "value": "70"})]}, "pass"),
        ("pulm_fev_only_low", {}, {"function_tests": [("2024-06-01", {"test": "FEV1", "value": "69.9"})]}, "fail"),
        ("pulm_fev_only_ok", {}, {"function_tests": [("2024-06-01", {"test": "FEV1", "value": "90"})]}, "unknown"),
    ],
    "organ_function": [
        ("organ_all_ok", {}, {"labs": [("2024-06-01", {"test": t, "value": v, "unit": u}) for t, v, u in
                                        (("AST", "200", "U/L"), ("ALT", "40", "IU/L"), ("TBIL", "31.5", "umol/L"), ("CREAT", "220", "umol/L"))]}, "pass"),
        ("organ_ast_above", {}, {"labs": [("2024-06-01", {"test": "AST", "value": "200.01", "unit": "U/L"})]}, "fail"),
        ("organ_tbil_mgdl", {}, {"labs": [("2024-06-01", {"test": "TBIL", "value": "2.0", "unit": "mg/dL"})]}, "fail"),
        ("organ_ref_high", {}, {"labs": [("2024-06-01", {"test": "CREAT", "value": "300", "unit": "umol/L", "ref_high": "150"})]}, "unknown"),
        ("organ_91_days", {}, {"labs": [("2024-03-31", {"test": "AST", "value": "900", "unit": "U/L"})]}, "unknown"),
        ("organ_90_days", {}, {"labs": [("2024-04-01", {"test": "AST", "value": "900", "unit": "U/L"})]}, "fail"),
    ],
    "creatinine_clearance": [
        # Male, 44 at D: (140 - 44) * 62.5 / (72 * 1.0) = 83.33; female x0.85 = 70.8
        ("crcl_male_ok", {"sex": "M", "birth_date": "1980-01-01"}, {"labs": [("2024-06-01", {"test": "CREAT", "value": "1.0", "unit": "mg/dL"})], "visits": [("2024-06-01", {"weight_kg": "62.5"})]}, "pass"),
        # (140 - 44) * 45 / 72 = 60.0 exactly for a man: passes; a woman: 51 fails.
        ("crcl_male_60", {"sex": "M"}, {"labs": [("2024-06-01", {"test": "CREAT", "value": "1.0", "unit": "mg/dL"})], "visits": [("2024-06-01", {"weight_kg": "45"})]}, "pass"),
        ("crcl_female_low", {"sex": "F"}, {"labs": [("2024-06-01", {"test": "CREAT", "value": "1.0", "unit": "mg/dL"})], "visits": [("2024-06-01", {"weight_kg": "45"})]}, "fail"),
        ("crcl_unknown_sex_between", {"sex": None}, {"labs": [("2024-06-01", {"test": "CREAT", "value": "1.0", "unit": "mg/dL"})], "visits": [("2024-06-01", {"weight_kg": "45"})]}, "unknown"),
        ("crcl_unknown_sex_high", {"sex": "U"}, {"labs": [("2024-06-01", {"test": "CREAT", "value": "88.4", "unit": "umol/L"})], "visits": [("2024-06-01", {"weight_kg": "90"})]}, "pass"),
        ("crcl_no_weight", {"sex": "M"}, {"labs": [("2024-06-01", {"test": "CREAT", "value": "1.0", "unit": "mg/dL"})]}, "unknown"),
    ],
    "uncontrolled_infection": [
        ("inf_uncontrolled", {}, {"conditions": [{"category": "infection", "infection_type": "Bacterial", "controlled": "N"}]}, "fail"),
        ("inf_unrecorded", {}, {"conditions": [{"category": "infection", "infection_type": "fungal"}]}, "unknown"),
        ("inf_viral", {}, {"conditions": [{"category": "infection", "infection_type": "viral", "controlled": "N"}]}, "pass"),
        ("inf_no_type", {}, {"conditions": [{"category": "infection", "controlled": "N"}]}, "pass"),
        ("inf_mixed", {}, {"conditions": [{"category": "infection", "infection_type": "fungal"},
                                          {"category": "infection", "infection_type": "bacterial", "controlled": "N"}]}, "fail"),
    ],
    "karnofsky": [
        ("karn_30", {}, {"visits": [("2024-06-01", {"karnofsky": "30"})]}, "pass"),
        ("karn_20", {}, {"visits": [("2024-06-01", {"karnofsky": "20"})]}, "fail"),
    ],
    "consent_capacity": [
        ("capacity_impaired", {}, {"conditions": [{"category": "psychiatric", "impairs_consent": "y"}]}, "fail"),
        ("capacity_future", {}, {"conditions": [{"category": "psychiatric", "impairs_consent": "Y", "onset_date": "2024-07-01"}]}, "pass"),
    ],
}

DATE_COL = {"visits": "visit_date", "function_tests": "test_date", "labs": "sample_date"}


def build(tmp_path):
    tables = {t: [] for t in ("patients", "visits", "labs", "function_tests", "conditions", "treatments", "relapses")}
    for cases in CASES.values():
        for pid, prow, others, _ in cases:
            tables["patients"].append(p(pid, **prow))
            for table, rows in others.items():
                for row in rows:
                    if isinstance(row, tuple):
                        date, fields = row
                        row = {DATE_COL[table]: date} | fields
                    tables[table].append({"patient_id": pid} | row)
    return write_export(tmp_path / "export", tables)


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    folder = build(tmp_path_factory.mktemp("rules"))
    return {e: evaluate_export(folder, e, D) for e in ("polars", "duckdb")}


@pytest.mark.parametrize("criterion,pid,expected",
                         [(c, pid, exp) for c, cases in CASES.items() for pid, _, _, exp in cases])
def test_rule_boundary(evaluations, engine, criterion, pid, expected):
    assert status_of(evaluations[engine], criterion)[pid] == expected


def test_engines_identical(evaluations):
    assert evaluations["polars"].equals(evaluations["duckdb"])


def test_absent_table_makes_its_criteria_unknown(tmp_path, engine):
    folder = write_export(tmp_path / "x", {"patients": [p("A1")], "visits": [{"patient_id": "A1", "visit_date": "2024-06-01", "edss": "3.0"}]})
    ev = evaluate_export(folder, engine, D)
    row = ev.row(0, named=True)
    assert row["edss_range"] == "pass"  # visits present
    for c in ("lvef", "organ_function", "progression_on_therapy", "no_second_tumor", "creatinine_clearance"):
        assert row[c] == "unknown", c
    # A present but empty table is "nothing recorded": no malignancy recorded passes.
    write_export(folder, {"conditions": []})
    assert evaluate_export(folder, engine, D).row(0, named=True)["no_second_tumor"] == "pass"


def test_overall_status(evaluations, engine):
    ev = evaluations[engine]
    st = dict(ev.select("patient_id", "status").iter_rows())
    assert st["alive_dead_on_d"] == "ineligible"
    # No line 1/2 episode while treatments is present: progression fails, so ineligible.
    assert st["course_unknown"] == "ineligible"
    assert ev.filter(pl.col("status") == "eligible").height == 0  # no case here has every datum
