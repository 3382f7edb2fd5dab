"""NCT04411641 (HERCULES): every criterion of the spec at the boundaries it names, on both engines.

The spec is `criteria-nct04411641.md` of the shared spec; the trial file is
`pipeline/trials/nct04411641.toml`. One export holds a patient per case; the patient id
names the case and the expected status (e.g. `relapse_d730_fail`). Each case is asserted
on both engines, and the two engines' evaluations must be identical. Absent tables are
separate exports.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import polars as pl
import pytest

from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria.load import load_trial
from pipeline.engines import evaluate
from pipeline.inputs.ingest import ingest
from tests.conftest import ENGINES, TODAY, status_of, write_export
from tests.test_three_trials_properties import sql_compiled_once  # noqa: F401 (autouse: SQL built once)

TRIAL = "nct04411641"
D = dt.date(2024, 6, 30)


def d(n: int) -> str:
    """D - n days."""
    return (D - dt.timedelta(days=n)).isoformat()


def after(n: int) -> str:
    """D + n days."""
    return (D + dt.timedelta(days=n)).isoformat()


def p(pid, **kw):
    base = {"patient_id": pid, "site_id": "S1", "sex": "F", "birth_date": "1975-01-01", "onset_date": "2015-01-01",
            "ms_course": "SPMS", "research_consent": "Y"}
    return base | kw


def visits(*pairs, **kw):
    """visits from (date, edss) pairs."""
    return {"visits": [{"visit_date": x, "edss": e} | kw for x, e in pairs]}


def relapses(*dates):
    return {"relapses": [{"onset_date": x} for x in dates]}


def cond(code, category="other", onset=None, end=None):
    return {"conditions": [{"code": code, "category": category, "onset_date": onset, "end_date": end}]}


def onset(n):
    """A patient whose onset is D - n days (no diagnosis date)."""
    return {"onset_date": d(n)}


def diagnosis(n):
    """A patient without onset, diagnosed D - n days."""
    return {"onset_date": None, "diagnosis_date": d(n)}


B = (d(400), "3.0")  # a baseline EDSS 3.0 in [D - 730, D - 365): threshold 4.0
TAIL = ((d(200), "4.0"), (d(100), "4.0"))  # a worsening to 4.0 at D - 200, confirmed 100 days later

# (criterion, patient id, patient fields, {table: rows}, expected status)
CASES: dict[str, list[tuple[str, dict, dict, str]]] = {
    "alive": [
        ("alive_dead_on_d_fail", {"death_date": d(0)}, {}, "fail"),
        ("alive_dead_after_d_pass", {"death_date": after(1)}, {}, "pass"),
        ("alive_no_death_pass", {}, {}, "pass"),
    ],
    "research_contact": [
        ("contact_y_pass", {"research_consent": "Y"}, {}, "pass"),
        ("contact_n_fail", {"research_consent": "n"}, {}, "fail"),
        ("contact_empty_unknown", {"research_consent": None}, {}, "unknown"),
    ],
    "age_range": [
        ("age_18_on_d_pass", {"birth_date": "2006-06-30"}, {}, "pass"),
        ("age_18_tomorrow_fail", {"birth_date": "2006-07-01"}, {}, "fail"),
        ("age_60_on_d_pass", {"birth_date": "1964-06-30"}, {}, "pass"),
        ("age_61_tomorrow_pass", {"birth_date": "1963-07-01"}, {}, "pass"),
        ("age_61_on_d_fail", {"birth_date": "1963-06-30"}, {}, "fail"),
        ("age_no_birth_unknown", {"birth_date": None}, {}, "unknown"),
    ],
    "spms_course": [
        ("course_spms_pass", {"ms_course": "SPMS"}, {}, "pass"),
        ("course_spms_lower_pass", {"ms_course": "spms"}, {}, "pass"),
        ("course_rrms_fail", {"ms_course": "RRMS"}, {}, "fail"),
        ("course_ppms_fail", {"ms_course": "PPMS"}, {}, "fail"),
        ("course_cis_fail", {"ms_course": "CIS"}, {}, "fail"),
        ("course_ris_fail", {"ms_course": "RIS"}, {}, "fail"),
        ("course_unk_unknown", {"ms_course": "UNK"}, {}, "unknown"),
        ("course_empty_unknown", {"ms_course": None}, {}, "unknown"),
    ],
    "edss_range": [
        ("edss_2_5_fail", {}, visits((d(10), "2.5")), "fail"),
        ("edss_3_0_pass", {}, visits((d(10), "3.0")), "pass"),
        ("edss_6_5_pass", {}, visits((d(10), "6.5")), "pass"),
        ("edss_7_0_fail", {}, visits((d(10), "7.0")), "fail"),
        ("edss_d365_pass", {}, visits((d(365), "4.0")), "pass"),
        ("edss_d366_unknown", {}, visits((d(366), "4.0")), "unknown"),
        ("edss_same_day_highest_fail", {}, visits((d(10), "4.0"), (d(10), "7.0")), "fail"),
        ("edss_latest_wins_pass", {}, visits((d(100), "2.0"), (d(10), "4.0")), "pass"),
        ("edss_after_d_ignored_pass", {}, visits((after(1), "2.0"), (d(10), "4.0")), "pass"),
        ("edss_none_unknown", {}, {"visits": [{"visit_date": d(10), "karnofsky": "80"}]}, "unknown"),
    ],
    "recent_progression": [
        ("prog_baseline_d730_pass", {}, visits((d(730), "3.0"), *TAIL), "pass"),
        # D - 731 is not a baseline: the earliest visit of the window (4.0 at D - 300) is; 4.0 is no worsening.
        ("prog_baseline_d731_out_fail", {}, visits((d(731), "3.0"), (d(300), "4.0"), *TAIL), "fail"),
        # D - 365 belongs to the window: the baseline is the latest before it, 4.0 at D - 366.
        ("prog_baseline_d366_not_d365_fail", {}, visits((d(366), "4.0"), (d(365), "3.0"), *TAIL), "fail"),
        ("prog_worsening_on_d365_pass", {}, visits((d(400), "3.0"), (d(365), "4.0"), (d(250), "4.0")), "pass"),
        ("prog_latest_of_interval_pass", {}, visits((d(700), "4.0"), (d(400), "3.0"), *TAIL), "pass"),
        ("prog_fallback_earliest_in_window_pass", {}, visits((d(300), "3.0"), *TAIL), "pass"),
        ("prog_only_baseline_in_window_unknown", {}, visits((d(300), "3.0")), "unknown"),
        ("prog_no_window_visit_unknown", {}, visits(B), "unknown"),
        ("prog_no_visits_unknown", {}, {}, "unknown"),
        ("prog_before_interval_only_unknown", {}, visits((d(731), "3.0")), "unknown"),
        ("prog_baseline_5_5_half_point_pass", {}, visits((d(400), "5.5"), (d(200), "6.0"), (d(100), "6.0")), "pass"),
        ("prog_baseline_5_0_half_point_fail", {}, visits((d(400), "5.0"), (d(200), "5.5"), (d(100), "5.5")), "fail"),
        ("prog_baseline_5_0_one_point_pass", {}, visits((d(400), "5.0"), (d(200), "6.0"), (d(100), "6.0")), "pass"),
        ("prog_confirm_at_84_pass", {}, visits(B, (d(200), "4.0"), (d(116), "4.0")), "pass"),
        ("prog_confirm_at_83_pending_unknown", {}, visits(B, (d(200), "4.0"), (d(117), "4.0")), "unknown"),
        ("prog_pending_until_d_unknown", {}, visits(B, (d(50), "4.5")), "unknown"),
        ("prog_pending_broken_fail", {}, visits(B, (d(50), "4.5"), (d(10), "3.5")), "fail"),
        ("prog_confirmation_after_d_unknown", {}, visits(B, (d(50), "4.0"), (after(40), "4.0")), "unknown"),
        ("prog_dip_between_fail", {}, visits(B, (d(200), "4.0"), (d(150), "3.5"), (d(100), "4.0"), (d(10), "3.0")),
         "fail"),
        ("prog_confirming_lower_fail", {}, visits(B, (d(200), "4.0"), (d(100), "3.5")), "fail"),
        ("prog_confirmed_on_d_pass", {}, visits(B, (d(84), "4.0"), (d(0), "4.0")), "pass"),
        ("prog_same_day_highest_baseline_fail", {}, visits(B, (d(400), "4.0"), *TAIL), "fail"),
        ("prog_visit_30_after_relapse_fail", {}, visits(B, (d(170), "4.0"), (d(80), "4.0"), (d(10), "3.0"))
         | relapses(d(200)), "fail"),
        ("prog_visit_31_after_relapse_pass", {}, visits(B, (d(170), "4.0"), (d(80), "4.0"), (d(10), "3.0"))
         | relapses(d(201)), "pass"),
        ("prog_visit_on_relapse_day_fail", {}, visits(B, (d(170), "4.0"), (d(80), "4.0"), (d(10), "3.0"))
         | relapses(d(170)), "fail"),
        ("prog_baseline_excluded_by_relapse_pass", {}, visits((d(500), "3.0"), (d(400), "5.0"), *TAIL)
         | relapses(d(410)), "pass"),
        ("prog_confirming_visit_excluded_fail", {}, visits(B, (d(200), "4.0"), (d(100), "4.0"), (d(60), "3.0"))
         | relapses(d(110)), "fail"),
    ],
    "no_recent_relapse": [
        ("relapse_d730_fail", {}, relapses(d(730)), "fail"),
        ("relapse_d731_pass", {}, relapses(d(731)), "pass"),
        ("relapse_on_d_fail", {}, relapses(d(0)), "fail"),
        ("relapse_after_d_pass", {}, relapses(after(1)), "pass"),
        ("relapse_none_pass", {}, {}, "pass"),
    ],
    "disease_duration_by_edss": [
        # 10 years: 3652 days (9.9986) below, 3653 (10.0014) not; 20 years: 7304 below, 7305 (20.0) not.
        ("dur_e5_5_7304_pass", onset(7304), visits((d(10), "5.5")), "pass"),
        ("dur_e5_5_7305_fail", onset(7305), visits((d(10), "5.5")), "fail"),
        ("dur_e5_0_3652_pass", onset(3652), visits((d(10), "5.0")), "pass"),
        ("dur_e5_0_3653_fail", onset(3653), visits((d(10), "5.0")), "fail"),
        ("dur_e5_0_7304_fail", onset(7304), visits((d(10), "5.0")), "fail"),
        ("dur_e7_0_7304_pass", onset(7304), visits((d(10), "7.0")), "pass"),
        ("dur_no_e_3652_pass", onset(3652), {}, "pass"),
        ("dur_no_e_3653_unknown", onset(3653), {}, "unknown"),
        ("dur_no_e_7304_unknown", onset(7304), {}, "unknown"),
        ("dur_no_e_7305_fail", onset(7305), {}, "fail"),
        ("dur_e_d366_not_used_unknown", onset(5000), visits((d(366), "6.0")), "unknown"),
        ("dur_e_d365_used_pass", onset(5000), visits((d(365), "6.0")), "pass"),
        ("dur_e_same_day_highest_pass", onset(5000), visits((d(10), "5.0"), (d(10), "5.5")), "pass"),
        ("dur_e_latest_wins_fail", onset(5000), visits((d(100), "6.0"), (d(10), "4.0")), "fail"),
        ("dur_diag_e5_5_7305_fail", diagnosis(7305), visits((d(10), "5.5")), "fail"),
        ("dur_diag_e5_5_7304_unknown", diagnosis(7304), visits((d(10), "5.5")), "unknown"),
        ("dur_diag_e5_0_3653_fail", diagnosis(3653), visits((d(10), "5.0")), "fail"),
        ("dur_diag_e5_0_3652_unknown", diagnosis(3652), visits((d(10), "5.0")), "unknown"),
        ("dur_diag_no_e_7305_fail", diagnosis(7305), {}, "fail"),
        ("dur_diag_no_e_7304_unknown", diagnosis(7304), {}, "unknown"),
        ("dur_onset_wins_over_diag_pass", {"onset_date": d(3000), "diagnosis_date": d(8000)},
         visits((d(10), "4.0")), "pass"),
        ("dur_neither_date_unknown", {"onset_date": None}, visits((d(10), "6.0")), "unknown"),
    ],
    "no_organ_transplant": [
        ("transplant_z94_fail", {}, cond("Z94"), "fail"),
        ("transplant_z94_0_fail", {}, cond("Z94.0", "renal", "2010-01-01"), "fail"),
        ("transplant_z940_lower_fail", {}, cond("z940"), "fail"),
        ("transplant_ended_fail", {}, cond("Z94.1", "cardiac", "2000-01-01", "2001-01-01"), "fail"),
        ("transplant_onset_after_d_pass", {}, cond("Z94.0", "renal", after(1)), "pass"),
        ("transplant_z95_pass", {}, cond("Z95.1", "cardiac"), "pass"),
        ("transplant_z9_pass", {}, cond("Z9"), "pass"),
        ("transplant_none_pass", {}, {}, "pass"),
    ],
    "no_hiv_pml": [
        *[(f"hiv_{c.lower()}_fail", {}, cond(f"{c}.9", "infection"), "fail") for c in ("B20", "B21", "B22", "B23", "B24")],
        ("hiv_z21_fail", {}, cond("Z21"), "fail"),
        ("hiv_a81_2_pml_fail", {}, cond("A81.2", "infection", "2019-01-01", "2019-06-01"), "fail"),
        ("hiv_onset_after_d_pass", {}, cond("B20", "infection", after(1)), "pass"),
        ("hiv_b25_pass", {}, cond("B25.0", "infection"), "pass"),
        ("hiv_b19_pass", {}, cond("B19", "infection"), "pass"),
        ("hiv_z20_pass", {}, cond("Z20.6"), "pass"),
        ("hiv_a81_1_pass", {}, cond("A81.1", "infection"), "pass"),
        ("hiv_empty_code_pass", {}, cond(None, "infection"), "pass"),
    ],
    "no_active_hepatitis_tb": [
        *[(f"hep_{c.lower().replace('.', '_')}_active_fail", {}, cond(c, "infection", "2020-01-01"), "fail")
          for c in ("B16.9", "B17.0", "B17.1", "B18.0", "B18.1", "B18.2", "A15.0", "A16", "A17.1", "A18.0", "A19.9")],
        ("hep_b18_1_ended_on_d_fail", {}, cond("B18.1", "infection", "2020-01-01", d(0)), "fail"),
        ("hep_b18_1_ended_d_minus_1_pass", {}, cond("B18.1", "infection", "2020-01-01", d(1)), "pass"),
        ("hep_onset_on_d_fail", {}, cond("A15", "infection", d(0)), "fail"),
        ("hep_onset_after_d_pass", {}, cond("A15", "infection", after(1)), "pass"),
        ("hep_no_onset_ongoing_fail", {}, cond("b18.2", "infection"), "fail"),
        ("hep_b17_2_pass", {}, cond("B17.2", "infection"), "pass"),
        ("hep_b17_unspecified_pass", {}, cond("B17", "infection"), "pass"),  # does not start with B17.0
        ("hep_b18_unspecified_pass", {}, cond("B18", "infection"), "pass"),
        ("hep_b18_8_pass", {}, cond("B18.8", "infection"), "pass"),
        ("hep_b15_pass", {}, cond("B15.9", "infection"), "pass"),
        ("hep_a20_pass", {}, cond("A20", "infection"), "pass"),
    ],
    "no_recent_malignancy": [
        ("malignancy_ended_d1826_fail", {}, cond("C50.9", "malignancy", "2010-01-01", d(1826)), "fail"),
        ("malignancy_ended_d1827_pass", {}, cond("C50.9", "malignancy", "2010-01-01", d(1827)), "pass"),
        ("malignancy_ongoing_fail", {}, cond("C50.9", "malignancy", "2023-01-01"), "fail"),
        ("malignancy_no_dates_fail", {}, cond(None, "malignancy"), "fail"),
        ("malignancy_skin_c44_fail", {}, cond("C44.9", "malignancy", d(100)), "fail"),
        ("malignancy_onset_after_d_pass", {}, cond("C50.9", "malignancy", after(1)), "pass"),
        ("malignancy_other_category_pass", {}, cond("C50.9", "other", d(100)), "pass"),
        ("malignancy_none_pass", {}, {}, "pass"),
    ],
}
SCREENING = ["contraception_pregnancy", "life_expectancy", "recurring_infection", "substance_abuse",
             "psychiatric_hospitalization", "bleeding_disorder", "lab_ecg"]
TABLES = ("patients", "visits", "relapses", "conditions", "treatments", "mri")

# Every datum present and every criterion passing: SPMS, 49, EDSS 3.0 -> 4.0 confirmed, onset 8 years ago.
ELIGIBLE = ("eligible_all", {"onset_date": d(3000)}, visits(B, *TAIL))


def build(folder: Path, cases=None, drop: tuple[str, ...] = ()) -> Path:
    tables: dict[str, list[dict]] = {t: [] for t in TABLES}
    if cases is None:
        cases = [(pid, prow, others) for cs in CASES.values() for pid, prow, others, _ in cs] + [ELIGIBLE]
    for pid, prow, others in cases:
        tables["patients"].append(p(pid, **prow))
        for table, rows in others.items():
            tables[table] += [{"patient_id": pid} | r for r in rows]
    return write_export(folder, {t: rows for t, rows in tables.items() if t not in drop})


@cache
def trial():
    return load_trial(TRIAL)


def evaluate_folder(folder: Path, engine: str, as_of: dt.date = D) -> pl.DataFrame:
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    return evaluate(reg, trial(), as_of, engine)


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    folder = build(tmp_path_factory.mktemp("hercules") / "export")
    return {e: evaluate_folder(folder, e) for e in ENGINES}


def test_trial_criteria_are_the_spec_table():
    assert trial().ids == ["alive", "research_contact", "age_range", "spms_course", "edss_range",
                           "recent_progression", "no_recent_relapse", "disease_duration_by_edss",
                           "contraception_pregnancy", "life_expectancy", "no_organ_transplant", "no_hiv_pml",
                           "no_active_hepatitis_tb", "recurring_infection", "no_recent_malignancy", "substance_abuse",
                           "psychiatric_hospitalization", "bleeding_disorder", "lab_ecg"]


def test_ids_name_the_expected_status():
    for cases in CASES.values():
        for pid, _, _, expected in cases:
            assert pid.endswith("_" + expected), pid


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("criterion,pid,expected",
                         [pytest.param(c, pid, exp, id=pid) for c, cases in CASES.items() for pid, _, _, exp in cases])
def test_criterion_boundary(evaluations, engine, criterion, pid, expected):
    assert status_of(evaluations[engine], criterion)[pid] == expected


@pytest.mark.parametrize("engine", ENGINES)
def test_screening_criteria(evaluations, engine):
    ev = evaluations[engine]
    for c in SCREENING:
        assert set(ev[c]) == {"screening"}, c


def test_export_is_clean(tmp_path):
    """No row of the cases is quarantined (a typo must not turn a case into a vacuous one)."""
    reg = ingest(build(tmp_path / "e"), Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    assert {t: i.rows_quarantined for t, i in reg.inputs.items() if i.rows_quarantined} == {}, reg.quarantine
    assert {t: i.duplicates_dropped for t, i in reg.inputs.items() if i.duplicates_dropped} == {}


def test_engines_identical(evaluations):
    assert evaluations["polars"].equals(evaluations["duckdb"])


@pytest.mark.parametrize("engine", ENGINES)
def test_progression_and_duration_evidence(evaluations, engine):
    ev = evaluations[engine]
    row = ev.filter(pl.col("patient_id") == "prog_baseline_d730_pass").row(0, named=True)
    assert [row[f"recent_progression__{n}"] for n in ("baseline_date", "baseline_edss", "worsening_date",
                                                        "worsening_edss", "confirmed_date")] == \
        [D - dt.timedelta(days=730), 3.0, D - dt.timedelta(days=200), 4.0, D - dt.timedelta(days=100)]
    row = ev.filter(pl.col("patient_id") == "dur_e5_5_7305_fail").row(0, named=True)
    assert (row["disease_duration_by_edss__years"], row["disease_duration_by_edss__edss"]) == (20.0, 5.5)
    # criterion 8 uses the EDSS of criterion 5
    same = ev.filter(pl.col("edss_range__edss").is_not_null() | pl.col("disease_duration_by_edss__edss").is_not_null())
    assert same["edss_range__edss"].equals(same["disease_duration_by_edss__edss"], check_names=False)


@pytest.mark.parametrize("engine", ENGINES)
def test_overall_status(evaluations, engine):
    st = status_of(evaluations[engine], "status")
    assert st["eligible_all"] == "eligible"
    assert st["course_rrms_fail"] == "ineligible"
    assert st["prog_no_visits_unknown"] == "possible"  # progression and EDSS unknown, nothing fails


# ---------------------------------------------------------------- absent tables

SOME = [
    ("progressing", {"onset_date": d(3000)}, visits(B, *TAIL) | cond("Z94", "renal")),
    ("relapsing", {"onset_date": d(9000)}, relapses(d(100)) | cond("C50", "malignancy")),
    ("nothing_recorded", {}, {}),
]
READS = {"visits": ["edss_range", "recent_progression", "disease_duration_by_edss"],
         "relapses": ["recent_progression", "no_recent_relapse"],
         "conditions": ["no_organ_transplant", "no_hiv_pml", "no_active_hepatitis_tb", "no_recent_malignancy"],
         "treatments": [], "mri": []}


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    folder = build(tmp_path_factory.mktemp("hercules_complete") / "e", SOME)
    return {e: evaluate_folder(folder, e) for e in ENGINES}


def test_complete_export_statuses(complete):
    for engine in ENGINES:
        ev = complete[engine]
        assert status_of(ev, "recent_progression") == {"progressing": "pass", "relapsing": "unknown",
                                                       "nothing_recorded": "unknown"}
        assert status_of(ev, "no_recent_relapse") == {"progressing": "pass", "relapsing": "fail",
                                                      "nothing_recorded": "pass"}
        # nothing_recorded: onset 2015-01-01 (9.5 years), no EDSS: below both limits
        assert status_of(ev, "disease_duration_by_edss") == {"progressing": "pass", "relapsing": "fail",
                                                             "nothing_recorded": "pass"}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("absent", list(READS))
def test_absent_table_makes_its_criteria_unknown(tmp_path, complete, engine, absent):
    ev = evaluate_folder(build(tmp_path / "e", SOME, drop=(absent,)), engine)
    for c in trial().ids:
        if c in READS[absent]:
            assert set(ev[c]) == {"unknown"}, (absent, c)
            for name in [n for n in ev.columns if n.startswith(f"{c}__")]:
                assert ev[name].null_count() == ev.height, name
        else:  # a criterion that does not read the table is judged as before (HERCULES reads no mri, no treatments)
            assert ev[c].equals(complete[engine][c]), (absent, c)
    assert ev.drop(*[n for c in READS[absent] for n in ev.columns if n == c or n.startswith(f"{c}__")], "status") \
        .equals(complete[engine].drop(*[n for c in READS[absent] for n in ev.columns if n == c or n.startswith(f"{c}__")],
                                       "status"))


@pytest.mark.parametrize("engine", ENGINES)
def test_set_parameters_rebuild_the_rule(tmp_path, engine):
    """--set of the new node types' parameters changes what they compute."""
    folder = build(tmp_path / "e", [
        ("confirm_at_60", {}, visits(B, (d(200), "4.0"), (d(140), "4.0"))),
        ("onset_12_years", {"onset_date": d(4400)}, visits((d(10), "5.0"))),
    ])
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    base = evaluate(reg, trial(), D, engine)
    assert status_of(base, "recent_progression")["confirm_at_60"] == "unknown"
    assert status_of(base, "disease_duration_by_edss")["onset_12_years"] == "fail"
    t = load_trial(TRIAL, ["recent_progression.confirmation_days=60", "disease_duration_by_edss.edss_step=4.5"])
    ev = evaluate(reg, t, D, engine)
    assert status_of(ev, "recent_progression")["confirm_at_60"] == "pass"
    assert status_of(ev, "disease_duration_by_edss")["onset_12_years"] == "pass"
