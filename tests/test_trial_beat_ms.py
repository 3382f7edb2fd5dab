"""NCT04047628 (BEAT-MS): every criterion of the spec at the boundaries it names, on both engines.

The spec is `criteria-nct04047628.md` of the shared spec; the trial file is
`pipeline/trials/nct04047628.toml`. One export holds a patient per case; the patient id
names the case and the expected status (e.g. `age_56_on_d_fail`). Each case is asserted on
both engines, and the two engines' evaluations must be identical. Absent tables and an
export without the `stop_reason` column are separate exports.
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

TRIAL = "nct04047628"
D = dt.date(2024, 6, 30)
S = "2022-01-01"  # a treatment start inside the activity window [D - 1095, D] = [2021-07-01, D]


def d(n: int) -> str:
    """D - n days."""
    return (D - dt.timedelta(days=n)).isoformat()


def after(n: int) -> str:
    """D + n days."""
    return (D + dt.timedelta(days=n)).isoformat()


def plus(iso: str, n: int) -> str:
    return (dt.date.fromisoformat(iso) + dt.timedelta(days=n)).isoformat()


def p(pid, **kw):
    base = {"patient_id": pid, "site_id": "S1", "sex": "F", "birth_date": "1980-01-01", "onset_date": "2015-01-01",
            "ms_course": "RRMS", "research_consent": "Y"}
    return base | kw


def relapses(*dates):
    return {"relapses": [{"onset_date": x} for x in dates]}


def scan(date, gd, t2):
    return {"scan_date": date, "gd_lesions": gd, "new_t2_lesions": t2}


def treat(drug, start, end=None, reason=None):
    return {"drug": drug, "start_date": start, "end_date": end, "stop_reason": reason}


def cond(code, category="other", onset=None, end=None):
    return {"code": code, "category": category, "onset_date": onset, "end_date": end}


def visit(date, edss=None, **kw):
    return {"visit_date": date, "edss": edss} | kw


LISTED = {  # the trial's drugs, each as the export may name it (generic or brand)
    "dimethyl_fumarate": "Tecfidera", "diroximel_fumarate": "Vumerity", "teriflunomide": "Aubagio",
    "cladribine": "Mavenclad", "siponimod": "Mayzent", "ozanimod": "Zeposia", "fingolimod": "Gilenya",
    "rituximab": "Rituxan", "ocrelizumab": "Ocrevus", "natalizumab": "Tysabri", "alemtuzumab": "Lemtrada",
    "ofatumumab": "Kesimpta",
}
UNLISTED = ["ponesimod", "ublituximab", "interferon_beta_1a", "glatiramer_acetate", "mitoxantrone", "divozilimab",
            "azathioprine"]

# (criterion, patient id, patient fields, {table: rows}, expected status)
CASES: dict[str, list[tuple[str, dict, dict, str]]] = {
    "alive": [
        ("alive_dead_on_d_fail", {"death_date": d(0)}, {}, "fail"),
        ("alive_dead_before_d_fail", {"death_date": d(400)}, {}, "fail"),
        ("alive_dead_after_d_pass", {"death_date": after(1)}, {}, "pass"),
        ("alive_no_death_pass", {}, {}, "pass"),
    ],
    "research_contact": [
        ("contact_y_pass", {"research_consent": "Y"}, {}, "pass"),
        ("contact_lower_y_pass", {"research_consent": "y"}, {}, "pass"),
        ("contact_n_fail", {"research_consent": "N"}, {}, "fail"),
        ("contact_empty_unknown", {"research_consent": None}, {}, "unknown"),
    ],
    "age_range": [
        ("age_18_on_d_pass", {"birth_date": "2006-06-30"}, {}, "pass"),
        ("age_18_tomorrow_fail", {"birth_date": "2006-07-01"}, {}, "fail"),
        ("age_55_on_d_pass", {"birth_date": "1969-06-30"}, {}, "pass"),
        ("age_56_tomorrow_pass", {"birth_date": "1968-07-01"}, {}, "pass"),
        ("age_56_on_d_fail", {"birth_date": "1968-06-30"}, {}, "fail"),
        ("age_no_birth_unknown", {"birth_date": None}, {}, "unknown"),
    ],
    "relapsing_ms": [
        ("course_rrms_pass", {"ms_course": "RRMS"}, {}, "pass"),
        ("course_spms_lower_pass", {"ms_course": "spms"}, {}, "pass"),
        ("course_ppms_fail", {"ms_course": "PPMS"}, {}, "fail"),
        ("course_cis_fail", {"ms_course": "CIS"}, {}, "fail"),
        ("course_ris_fail", {"ms_course": "RIS"}, {}, "fail"),
        ("course_unk_unknown", {"ms_course": "UNK"}, {}, "unknown"),
        ("course_empty_unknown", {"ms_course": None}, {}, "unknown"),
    ],
    "edss_range": [
        ("edss_6_0_pass", {}, {"visits": [visit(d(10), "6.0")]}, "pass"),
        ("edss_6_5_fail", {}, {"visits": [visit(d(10), "6.5")]}, "fail"),
        ("edss_0_0_pass", {}, {"visits": [visit(d(10), "0.0")]}, "pass"),
        ("edss_d365_pass", {}, {"visits": [visit(d(365), "3.0")]}, "pass"),
        ("edss_d366_unknown", {}, {"visits": [visit(d(366), "3.0")]}, "unknown"),
        ("edss_after_d_ignored_pass", {}, {"visits": [visit(after(1), "7.0"), visit(d(10), "3.0")]}, "pass"),
        ("edss_same_day_highest_fail", {}, {"visits": [visit(d(10), "3.0"), visit(d(10), "6.5")]}, "fail"),
        ("edss_latest_wins_pass", {}, {"visits": [visit(d(100), "7.0"), visit(d(10), "3.0")]}, "pass"),
        ("edss_none_unknown", {}, {"visits": [visit(d(10), None, karnofsky="80")]}, "unknown"),
    ],
    "disease_activity": [
        ("activity_relapses_30_apart_pass", {}, relapses(d(30), d(0)), "pass"),
        ("activity_relapses_29_apart_fail", {}, relapses(d(29), d(0)), "fail"),
        ("activity_relapse_d1095_pass", {}, relapses(d(1095), d(0)), "pass"),
        ("activity_relapse_d1096_fail", {}, relapses(d(1096), d(0)), "fail"),
        ("activity_relapse_after_d_fail", {}, relapses(d(100), after(1)), "fail"),
        # 0, 20, 35, 60: the openers are 0 and 35 (60 is 25 days after 35): two episodes.
        ("activity_greedy_chain_pass", {}, relapses(d(500), d(480), d(465), d(440)), "pass"),
        ("activity_chain_within_29_fail", {}, relapses(d(500), d(490), d(471)), "fail"),
        # Two relapse rows of one date are one event date (the duplicate row is dropped at ingest).
        ("activity_same_date_relapses_fail", {}, relapses(d(100), d(100)), "fail"),
        ("activity_relapse_and_gd_scan_pass", {}, relapses(d(300)) | {"mri": [scan(d(100), 1, 0)]}, "pass"),
        ("activity_relapse_and_t2_scan_pass", {}, relapses(d(300)) | {"mri": [scan(d(100), 0, 1)]}, "pass"),
        ("activity_gd_scan_t2_empty_pass", {}, relapses(d(300)) | {"mri": [scan(d(100), 3, None)]}, "pass"),
        ("activity_two_active_scans_pass", {}, {"mri": [scan(d(300), None, 2), scan(d(100), 1, 1)]}, "pass"),
        ("activity_inactive_scan_fail", {}, relapses(d(300)) | {"mri": [scan(d(100), 0, 0)]}, "fail"),
        ("activity_undetermined_scan_unknown", {}, relapses(d(300)) | {"mri": [scan(d(100), None, None)]}, "unknown"),
        ("activity_half_empty_scan_unknown", {}, relapses(d(300)) | {"mri": [scan(d(100), 0, None)]}, "unknown"),
        ("activity_two_undetermined_unknown", {}, {"mri": [scan(d(300), None, None), scan(d(100), None, 0)]},
         "unknown"),
        ("activity_undetermined_29_after_relapse_fail", {}, relapses(d(300)) | {"mri": [scan(d(271), None, None)]},
         "fail"),
        ("activity_undetermined_30_after_relapse_unknown", {},
         relapses(d(300)) | {"mri": [scan(d(270), None, None)]}, "unknown"),
        ("activity_relapse_and_scan_same_day_fail", {}, relapses(d(100)) | {"mri": [scan(d(100), 2, 2)]}, "fail"),
        ("activity_scan_29_before_relapse_fail", {}, relapses(d(100)) | {"mri": [scan(d(129), 2, 0)]}, "fail"),
        ("activity_scan_d1096_fail", {}, relapses(d(0)) | {"mri": [scan(d(1096), 2, 0)]}, "fail"),
        ("activity_scan_d1095_pass", {}, relapses(d(0)) | {"mri": [scan(d(1095), 2, 0)]}, "pass"),
        ("activity_scan_after_d_fail", {}, relapses(d(100)) | {"mri": [scan(after(1), 2, 0)]}, "fail"),
        ("activity_one_relapse_fail", {}, relapses(d(100)), "fail"),
        ("activity_none_fail", {}, {}, "fail"),
    ],
    "activity_on_dmt": [
        ("dmt_relapse_start_plus_30_pass", {}, {"treatments": [treat("natalizumab", S)]} | relapses(plus(S, 30)), "pass"),
        ("dmt_relapse_start_plus_29_fail", {}, {"treatments": [treat("natalizumab", S)]} | relapses(plus(S, 29)), "fail"),
        ("dmt_relapse_on_end_pass", {}, {"treatments": [treat("natalizumab", S, plus(S, 200))]}
         | relapses(plus(S, 200)), "pass"),
        ("dmt_relapse_day_after_end_fail", {}, {"treatments": [treat("natalizumab", S, plus(S, 200))]}
         | relapses(plus(S, 201)), "fail"),
        ("dmt_ongoing_relapse_on_d_pass", {}, {"treatments": [treat("natalizumab", S)]} | relapses(d(0)), "pass"),
        ("dmt_end_after_d_relapse_on_d_pass", {}, {"treatments": [treat("natalizumab", S, after(30))]}
         | relapses(d(0)), "pass"),
        ("dmt_relapse_after_d_fail", {}, {"treatments": [treat("natalizumab", S)]} | relapses(after(1)), "fail"),
        ("dmt_period_empty_fail", {}, {"treatments": [treat("natalizumab", S, plus(S, 29))]}
         | relapses(plus(S, 29), plus(S, 30)), "fail"),
        ("dmt_relapse_before_start_fail", {}, {"treatments": [treat("natalizumab", S)]} | relapses(plus(S, -5)), "fail"),
        ("dmt_relapse_d1096_fail", {}, {"treatments": [treat("ocrelizumab", "2015-01-01")]} | relapses(d(1096)), "fail"),
        ("dmt_relapse_d1095_pass", {}, {"treatments": [treat("ocrelizumab", "2015-01-01")]} | relapses(d(1095)), "pass"),
        ("dmt_switch_not_merged_fail", {}, {"treatments": [treat("natalizumab", "2020-01-01", "2022-01-01"),
                                                             treat("ocrelizumab", "2021-12-20")]}
         | relapses("2022-01-10"), "fail"),
        ("dmt_active_scan_on_therapy_pass", {}, {"treatments": [treat("fingolimod", S)],
                                                 "mri": [scan(plus(S, 100), 1, None)]}, "pass"),
        ("dmt_undetermined_scan_on_therapy_unknown", {}, {"treatments": [treat("fingolimod", S)],
                                                          "mri": [scan(plus(S, 100), None, None)]}, "unknown"),
        ("dmt_inactive_scan_on_therapy_fail", {}, {"treatments": [treat("fingolimod", S)],
                                                   "mri": [scan(plus(S, 100), 0, 0)]}, "fail"),
        ("dmt_undetermined_scan_before_offset_fail", {}, {"treatments": [treat("fingolimod", S)],
                                                          "mri": [scan(plus(S, 29), None, None)]}, "fail"),
        ("dmt_inefficacy_end_start_plus_30_unknown", {},
         {"treatments": [treat("natalizumab", S, plus(S, 30), "inefficacy")]}, "unknown"),
        ("dmt_inefficacy_end_start_plus_29_fail", {},
         {"treatments": [treat("natalizumab", S, plus(S, 29), "inefficacy")]}, "fail"),
        ("dmt_inefficacy_end_d1095_unknown", {},
         {"treatments": [treat("natalizumab", "2021-01-01", d(1095), "inefficacy")]}, "unknown"),
        ("dmt_inefficacy_end_d1096_fail", {},
         {"treatments": [treat("natalizumab", "2021-01-01", d(1096), "inefficacy")]}, "fail"),
        ("dmt_inefficacy_end_on_d_unknown", {}, {"treatments": [treat("natalizumab", S, d(0), "Inefficacy")]},
         "unknown"),
        ("dmt_inefficacy_end_after_d_fail", {}, {"treatments": [treat("natalizumab", S, after(1), "inefficacy")]},
         "fail"),
        ("dmt_inefficacy_unlisted_drug_fail", {}, {"treatments": [treat("Avonex", S, plus(S, 100), "inefficacy")]},
         "fail"),
        ("dmt_inefficacy_ongoing_fail", {}, {"treatments": [treat("natalizumab", S, None, "inefficacy")]}, "fail"),
        ("dmt_adverse_event_fail", {}, {"treatments": [treat("natalizumab", S, plus(S, 100), "adverse_event")]},
         "fail"),
        ("dmt_inefficacy_and_relapse_on_therapy_pass", {},
         {"treatments": [treat("natalizumab", S, plus(S, 100), "inefficacy")]} | relapses(plus(S, 40)), "pass"),
        ("dmt_hyphen_spelling_pass", {}, {"treatments": [treat("Diroximel-Fumarate", S)]} | relapses(plus(S, 100)), "pass"),
        ("dmt_no_treatment_fail", {}, relapses(plus(S, 100)), "fail"),
        ("dmt_none_fail", {}, {}, "fail"),
        *[(f"dmt_drug_{g}_pass", {}, {"treatments": [treat(g, S)]} | relapses(plus(S, 100)), "pass") for g in LISTED],
        *[(f"dmt_brand_{g}_pass", {}, {"treatments": [treat(b, S)]} | relapses(plus(S, 100)), "pass")
          for g, b in LISTED.items()],
        *[(f"dmt_unlisted_{g}_fail", {}, {"treatments": [treat(g, S)]} | relapses(plus(S, 100)), "fail")
          for g in UNLISTED],
    ],
    "no_pml": [
        ("pml_a81_2_fail", {}, {"conditions": [cond("A81.2", "infection", "2020-01-01")]}, "fail"),
        ("pml_a812_lower_fail", {}, {"conditions": [cond("a812", "infection")]}, "fail"),
        ("pml_a81_21_fail", {}, {"conditions": [cond("A81.21", "infection")]}, "fail"),
        ("pml_any_category_fail", {}, {"conditions": [cond("A81.2", "other")]}, "fail"),
        ("pml_ended_long_ago_fail", {}, {"conditions": [cond("A81.2", "infection", "1990-01-01", "1991-01-01")]},
         "fail"),
        ("pml_onset_on_d_fail", {}, {"conditions": [cond("A81.2", "infection", d(0))]}, "fail"),
        ("pml_onset_after_d_pass", {}, {"conditions": [cond("A81.2", "infection", after(1))]}, "pass"),
        ("pml_a81_3_pass", {}, {"conditions": [cond("A81.3", "infection")]}, "pass"),
        ("pml_a81_pass", {}, {"conditions": [cond("A81", "infection")]}, "pass"),
        ("pml_empty_code_pass", {}, {"conditions": [cond(None, "infection")]}, "pass"),
        ("pml_none_pass", {}, {}, "pass"),
    ],
    "no_mds": [
        ("mds_d46_fail", {}, {"conditions": [cond("D46", "other", "2020-01-01")]}, "fail"),
        ("mds_d46_9_fail", {}, {"conditions": [cond("D46.9", "malignancy")]}, "fail"),
        ("mds_d469_lower_fail", {}, {"conditions": [cond("d469", "other")]}, "fail"),
        ("mds_ended_fail", {}, {"conditions": [cond("D46.4", "other", "2000-01-01", "2001-01-01")]}, "fail"),
        ("mds_onset_after_d_pass", {}, {"conditions": [cond("D46", "other", after(10))]}, "pass"),
        ("mds_d47_pass", {}, {"conditions": [cond("D47.1", "other")]}, "pass"),
        ("mds_d4_pass", {}, {"conditions": [cond("D4", "other")]}, "pass"),
        ("mds_none_pass", {}, {}, "pass"),
    ],
}
SCREENING = ["mri_dissemination", "vaccinations", "contraception"]
TABLES = ("patients", "visits", "relapses", "mri", "treatments", "conditions")

# Every datum present and every criterion passing (the screening ones are `screening`): eligible.
ELIGIBLE = ("eligible_all", {}, {"visits": [visit(d(10), "3.5")], "treatments": [treat("Ocrevus", "2021-01-01")]}
            | relapses(d(500), d(300)))


def build(folder: Path, cases=None, drop: tuple[str, ...] = ()) -> Path:
    tables: dict[str, list[dict]] = {t: [] for t in TABLES}
    for pid, prow, others in cases if cases is not None else _all_patients():
        tables["patients"].append(p(pid, **prow))
        for table, rows in others.items():
            tables[table] += [{"patient_id": pid} | r for r in rows]
    return write_export(folder, {t: rows for t, rows in tables.items() if t not in drop})


def _all_patients():
    out = [(pid, prow, others) for cases in CASES.values() for pid, prow, others, _ in cases]
    return [*out, ELIGIBLE[:3]]


@cache
def trial():
    return load_trial(TRIAL)


def evaluate_folder(folder: Path, engine: str, as_of: dt.date = D) -> pl.DataFrame:
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    return evaluate(reg, trial(), as_of, engine)


def without_stop_reason(folder: Path) -> Path:
    """treatments.csv as written by a registry that does not export the optional stop_reason column."""
    path = folder / "treatments.csv"
    pl.read_csv(path, infer_schema=False).drop("stop_reason").write_csv(path, null_value="")
    return folder


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    folder = build(tmp_path_factory.mktemp("beat_ms") / "export")
    return {e: evaluate_folder(folder, e) for e in ENGINES}


def test_trial_criteria_are_the_spec_table():
    assert trial().ids == ["alive", "research_contact", "age_range", "relapsing_ms", "edss_range",
                           "mri_dissemination", "disease_activity", "activity_on_dmt", "vaccinations",
                           "contraception", "no_pml", "no_mds"]


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
    assert {t: i.duplicates_dropped for t, i in reg.inputs.items() if i.duplicates_dropped} == {"relapses": 1}  # activity_same_date_relapses_fail, on purpose


def test_engines_identical(evaluations):
    assert evaluations["polars"].equals(evaluations["duckdb"])


@pytest.mark.parametrize("engine", ENGINES)
def test_episode_evidence(evaluations, engine):
    ev = evaluations[engine].filter(pl.col("patient_id").is_in([
        "activity_greedy_chain_pass", "activity_undetermined_scan_unknown", "activity_none_fail",
        "activity_two_undetermined_unknown"]))
    got = {r[0]: r[1:] for r in ev.select("patient_id", "disease_activity__episodes_known",
                                          "disease_activity__episodes_possible").iter_rows()}
    assert got == {"activity_greedy_chain_pass": (2, 2), "activity_undetermined_scan_unknown": (1, 2),
                   "activity_none_fail": (0, 0), "activity_two_undetermined_unknown": (0, 2)}


@pytest.mark.parametrize("engine", ENGINES)
def test_overall_status(evaluations, engine):
    st = status_of(evaluations[engine], "status")
    assert st["eligible_all"] == "eligible"
    assert st["alive_dead_on_d_fail"] == "ineligible"
    assert st["activity_undetermined_scan_unknown"] == "ineligible"  # no activity on a listed therapy: fail


# ---------------------------------------------------------------- absent tables and columns

SOME = [  # a few patients whose statuses differ from unknown when every table is present
    ("two_relapses_on_therapy", {}, {"treatments": [treat("natalizumab", S)], "visits": [visit(d(10), "3.0")],
                                     "conditions": [cond("A81.2", "infection")]} | relapses(plus(S, 100), plus(S, 300))),
    ("stopped_for_inefficacy", {}, {"treatments": [treat("natalizumab", S, plus(S, 100), "inefficacy")],
                                    "conditions": [cond("D46", "other")], "mri": [scan(d(50), 0, 0)]}),
    ("nothing_recorded", {}, {}),
]
READS = {"visits": ["edss_range"], "relapses": ["disease_activity", "activity_on_dmt"],
         "mri": ["disease_activity", "activity_on_dmt"], "treatments": ["activity_on_dmt"],
         "conditions": ["no_pml", "no_mds"]}


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    folder = build(tmp_path_factory.mktemp("beat_complete") / "e", SOME)
    return {e: evaluate_folder(folder, e) for e in ENGINES}


def test_complete_export_statuses(complete):
    for engine in ENGINES:
        ev = complete[engine]
        assert status_of(ev, "disease_activity") == {"two_relapses_on_therapy": "pass",
                                                     "stopped_for_inefficacy": "fail", "nothing_recorded": "fail"}
        assert status_of(ev, "activity_on_dmt") == {"two_relapses_on_therapy": "pass",
                                                    "stopped_for_inefficacy": "unknown", "nothing_recorded": "fail"}
        assert status_of(ev, "no_pml")["two_relapses_on_therapy"] == "fail"
        assert status_of(ev, "no_mds")["stopped_for_inefficacy"] == "fail"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("absent", list(READS))
def test_absent_table_makes_its_criteria_unknown(tmp_path, complete, engine, absent):
    ev = evaluate_folder(build(tmp_path / "e", SOME, drop=(absent,)), engine)
    for c in trial().ids:
        if c in READS[absent]:
            assert set(ev[c]) == {"unknown"}, (absent, c)
            for name in [n for n in ev.columns if n.startswith(f"{c}__")]:
                assert ev[name].null_count() == ev.height, name
        else:  # a criterion that does not read the table is judged as before
            assert ev[c].equals(complete[engine][c]), (absent, c)


@pytest.mark.parametrize("engine", ENGINES)
def test_without_stop_reason_column(tmp_path, complete, engine):
    """A registry that does not export stop_reason: the column is empty, no episode is stopped for inefficacy."""
    ev = evaluate_folder(without_stop_reason(build(tmp_path / "e", SOME)), engine)
    assert status_of(ev, "activity_on_dmt") == {"two_relapses_on_therapy": "pass", "stopped_for_inefficacy": "fail",
                                               "nothing_recorded": "fail"}
    others = [c for c in trial().ids if c != "activity_on_dmt"]
    assert ev.select(others).equals(complete[engine].select(others))


@pytest.mark.parametrize("engine", ENGINES)
def test_set_parameters_rebuild_the_rule(tmp_path, engine):
    """--set of the new node types' parameters: a gap of 20 days splits relapses 29 days apart; an empty drug
    list leaves no qualifying therapy; an empty list of stop reasons drops the inefficacy rule."""
    folder = build(tmp_path / "e", [
        ("apart_29", {}, relapses(d(29), d(0))),
        ("inefficacy", {}, {"treatments": [treat("natalizumab", S, plus(S, 100), "inefficacy")]}),
        ("on_therapy", {}, {"treatments": [treat("natalizumab", S)]} | relapses(plus(S, 100))),
    ])
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    base = evaluate(reg, trial(), D, engine)
    assert status_of(base, "disease_activity")["apart_29"] == "fail"
    assert status_of(base, "activity_on_dmt") == {"apart_29": "fail", "inefficacy": "unknown", "on_therapy": "pass"}
    t = load_trial(TRIAL, ["disease_activity.episode_gap_days=20", "activity_on_dmt.unknown_stop_reasons=[]"])
    ev = evaluate(reg, t, D, engine)
    assert status_of(ev, "disease_activity")["apart_29"] == "pass"
    assert status_of(ev, "activity_on_dmt")["inefficacy"] == "fail"
    ev = evaluate(reg, load_trial(TRIAL, ["activity_on_dmt.drugs=[]"]), D, engine)
    assert set(ev["activity_on_dmt"]) == {"fail"}
