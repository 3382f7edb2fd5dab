"""Data-quality expectations: each fires on a planted case and stays quiet on a clean export."""

from __future__ import annotations

import copy
import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import load_trial
from pipeline.inputs.ingest import ingest
from pipeline.quality.frames import load_suites, visit_spreads
from pipeline.quality.stage import run_quality
from tests.conftest import TODAY, write_export

D = dt.date(2026, 11, 1)


def day(n: int) -> str:
    """The date n days before D."""
    return (D - dt.timedelta(days=n)).isoformat()


def clean() -> dict[str, list[dict]]:
    """Two plausible, complete patients: every check passes."""
    pats = [{"patient_id": p, "site_id": "S1", "sex": "F", "birth_date": "1980-01-01", "onset_date": "2010-01-01",
             "diagnosis_date": "2011-01-01", "ms_course": "RRMS", "research_consent": "Y"} for p in ("A", "B")]
    visits = [{"patient_id": p, "visit_date": day(n), "edss": "3.0", "karnofsky": "90", "weight_kg": w}
              for p in ("A", "B") for n, w in ((10, "70"), (25, "72"), (200, "71"))]
    labs = [{"patient_id": p, "sample_date": day(10), "test": t, "value": "20", "unit": u}
            for p in ("A", "B") for t, u in (("AST", "U/L"), ("ALT", "U/L"), ("TBIL", "umol/L"), ("CREAT", "umol/L"))]
    return {
        "patients": pats, "visits": visits, "labs": labs,
        "function_tests": [{"patient_id": p, "test_date": day(10), "test": "LVEF", "value": "60"} for p in ("A", "B")],
        "relapses": [{"patient_id": p, "onset_date": "2015-01-01"} for p in ("A", "B")],
        "treatments": [{"patient_id": p, "drug": d, "start_date": s, "end_date": e, "stop_reason": r}
                       for p in ("A", "B") for d, s, e, r in (("Avonex", "2011-02-01", "2011-12-31", "Inefficacy"),
                                                              ("Tysabri", "2012-01-01", None, None))],
        "conditions": [{"patient_id": p, "category": "other", "onset_date": "2000-01-01", "severity": "mild"}
                       for p in ("A", "B")],
        "mri": [{"patient_id": p, "scan_date": s, "gd_lesions": g, "new_t2_lesions": t}
                for p in ("A", "B") for s, g, t in (("2011-01-15", "1", None), ("2012-01-15", "0", "0"))],
    }


def patient(data, pid="A"):
    return next(p for p in data["patients"] if p["patient_id"] == pid)


def set_patient(**kw):
    def plant(data):
        patient(data).update(kw)
    return plant


def add(table, **row):
    def plant(data):
        data[table].append({"patient_id": "A", **row})
    return plant


def drop(table, pid="B", test=None):
    def plant(data):
        data[table] = [r for r in data[table]
                       if not (pid in (None, r["patient_id"]) and (test is None or r["test"] == test))]
    return plant


def set_all(table, **kw):
    def plant(data):
        for r in data[table]:
            r.update(kw)
    return plant


def death(n: int):
    return set_patient(death_date=day(n))


# expectation id -> (plant, ids that must fire besides it)
PLANTS = {
    "onset_before_birth": (set_patient(onset_date="1975-01-01", diagnosis_date="1976-01-01"), set()),
    "diagnosis_before_onset": (set_patient(diagnosis_date="2005-01-01"), set()),
    "death_before_birth": (set_patient(death_date="1979-12-31"),
                           {"visit_after_death", "relapse_after_death", "treatment_after_death", "lab_after_death",
                            "function_test_after_death", "condition_before_birth", "mri_after_death"}),
    "birth_date_missing": (set_patient(birth_date=None), set()),
    "onset_date_missing": (set_patient(onset_date=None), set()),
    "no_visits": (drop("visits"), {"no_recent_edss"}),
    "no_treatments": (drop("treatments", pid=None), set()),
    "no_recent_edss": (lambda d: [r.update(edss=None) for r in d["visits"] if r["patient_id"] == "B"], set()),
    "no_recent_labs": (drop("labs", pid=None, test="TBIL"), set()),
    "no_recent_lvef": (drop("function_tests", pid=None), set()),
    "edss_jump": (add("visits", visit_date=day(35), edss="7.0"), set()),
    "weight_jump": (add("visits", visit_date=day(30), weight_kg="90"), set()),
    "visit_after_death": (lambda d: (death(5)(d), d["visits"].append({"patient_id": "A", "visit_date": day(3)})),
                          set()),
    "edss_mean": (set_all("visits", edss="8.0"), set()),
    "weight_mean": (set_all("visits", weight_kg="150"), set()),
    "relapse_before_ms_onset": (add("relapses", onset_date="2009-12-31"), set()),
    "relapse_after_death": (lambda d: (death(5)(d), d["relapses"].append({"patient_id": "A", "onset_date": day(3)})),
                            set()),
    "treatment_before_birth": (add("treatments", drug="Avonex", start_date="1979-12-31"), set()),
    "treatment_after_death": (lambda d: (death(5)(d), d["treatments"].append(
        {"patient_id": "A", "drug": "Avonex", "start_date": day(3)})), set()),
    "lab_after_death": (lambda d: (death(5)(d), d["labs"].append(
        {"patient_id": "A", "sample_date": day(3), "test": "AST", "value": "20", "unit": "U/L"})), set()),
    "function_test_after_death": (lambda d: (death(5)(d), d["function_tests"].append(
        {"patient_id": "A", "test_date": day(3), "test": "LVEF", "value": "60"})), set()),
    "condition_before_birth": (add("conditions", category="other", onset_date="1979-12-31", severity="mild"), set()),
    "stop_reason_outside_list": (add("treatments", drug="Avonex", start_date="2010-06-01", end_date="2011-01-01",
                                     stop_reason="lack of efficacy"), set()),
    "stop_reason_on_ongoing": (add("treatments", drug="Gilenya", start_date="2013-01-01", stop_reason="planned"),
                               set()),
    "mri_before_birth": (add("mri", scan_date="1979-12-31", gd_lesions="0"), set()),
    "mri_after_death": (lambda d: (death(5)(d), d["mri"].append({"patient_id": "A", "scan_date": day(3)})), set()),
    "mri_new_t2_on_first_scan": (add("mri", scan_date="2010-06-01", gd_lesions="0", new_t2_lesions="2"), set()),
    "mri_counts_empty": (set_all("mri", gd_lesions=None, new_t2_lesions=None), set()),
}


def findings(tmp_path, data) -> dict[str, dict]:
    folder = write_export(tmp_path / "e", data)
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    assert sum(i.rows_quarantined for i in reg.inputs.values()) == 0, "a planted case must pass pandera"
    q = run_quality(reg, load_trial(), D)
    return {f["id"]: f for f in q["findings"]}


def test_every_expectation_has_a_planted_case():
    ids = {e["meta"]["id"] for s in load_suites().values() for e in s["expectations"]}
    assert ids == set(PLANTS)


def test_clean_export_raises_no_finding(tmp_path):
    got = findings(tmp_path, clean())
    assert set(got) == set(PLANTS)
    assert {k for k, f in got.items() if not f["ok"]} == set()
    assert all("error" not in f for f in got.values())


@pytest.mark.parametrize("check", sorted(PLANTS))
def test_planted_case_fires(tmp_path, check):
    plant, also = PLANTS[check]
    data = copy.deepcopy(clean())
    plant(data)
    got = findings(tmp_path, data)
    fired = {k for k, f in got.items() if not f["ok"]}
    assert check in fired
    assert fired - {check} <= also, f"unexpected findings: {fired - {check} - also}"
    if "count" in got[check] and not got[check]["sampled"]:
        assert got[check]["count"] >= 1


def test_absent_tables_are_skipped_not_failed(tmp_path):
    data = {"patients": clean()["patients"]}
    folder = write_export(tmp_path / "e", data)
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY)
    q = run_quality(reg, load_trial(), D)
    assert {f["table"] for f in q["findings"]} == {"patients"}


def brute_spreads(rows: list[dict]) -> dict:
    """The definition, one visit at a time: spread over the patient's visits in [date - 30, date]."""
    out = {}
    for r in rows:
        win = [x for x in rows if x["patient_id"] == r["patient_id"]
               and r["visit_date"] - dt.timedelta(days=30) <= x["visit_date"] <= r["visit_date"]]
        e = [x["edss"] for x in win if x["edss"] is not None]
        w = [x["weight_kg"] for x in win if x["weight_kg"] is not None]
        ej = max(e) - min(e) if r["edss"] is not None and len(e) > 1 else None
        wj = (max(w) - min(w)) * 100.0 / min(w) if r["weight_kg"] is not None and len(w) > 1 else None
        key = (r["patient_id"], r["visit_date"])
        prev = out.get(key, (None, None))
        out[key] = tuple(b if a is None else a if b is None else max(a, b) for a, b in zip(prev, (ej, wj)))
    return {k: v for k, v in out.items() if v != (None, None)}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "patient_id": st.sampled_from(["A", "B"]),
    "visit_date": st.dates(dt.date(2024, 1, 1), dt.date(2024, 4, 1)),
    "edss": st.sampled_from([None, 0.0, 2.0, 3.5, 6.5]),
    "weight_kg": st.sampled_from([None, 50.0, 61.0, 80.0])}), max_size=30))
def test_visit_spreads_match_the_definition(rows):
    frame = pl.DataFrame(rows, schema={"patient_id": pl.Utf8, "visit_date": pl.Date, "edss": pl.Float64,
                                       "weight_kg": pl.Float64})
    got = {(p, d): (e, w) for p, d, e, w in visit_spreads(frame).rows()}
    assert got == brute_spreads(rows)


def test_a_failing_quality_stage_does_not_stop_the_run(tmp_path, monkeypatch):
    import json

    from pipeline.cli import main
    from pipeline.quality import stage as quality
    from tests.conftest import ROOT

    def broken(*args, **kwargs):
        raise RuntimeError("GE exploded")

    monkeypatch.setattr(quality, "run_quality", broken)
    out = tmp_path / "run"
    assert main(["run", "--input", str(ROOT / "data_samples/default"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "GE exploded" in summary["quality"]["error"]
    assert "GE exploded" in (out / "report.html").read_text()


def test_stop_reason_suite_lists_the_contract_codes():
    from schemas.treatments import STOP_REASONS
    exp = next(e for e in load_suites()["treatments"]["expectations"] if e["meta"]["id"] == "stop_reason_outside_list")
    assert exp["kwargs"]["value_set"] == STOP_REASONS


def test_stop_reason_findings_count_rows(tmp_path):
    data = clean()
    T = {"patient_id": "B", "drug": "Avonex", "start_date": "2010-06-01"}
    data["treatments"] += [T | {"end_date": "2010-07-01", "stop_reason": "lack of efficacy"},
                           T | {"end_date": "2010-08-01", "stop_reason": "LACK OF EFFICACY"},
                           T | {"end_date": "2010-09-01", "stop_reason": "PLANNED"},
                           T | {"stop_reason": "whatever"}]  # ongoing: that finding only
    got = findings(tmp_path, data)
    assert got["stop_reason_outside_list"]["count"] == 2
    assert got["stop_reason_on_ongoing"]["count"] == 1


def test_mri_counts_empty_share(tmp_path):
    data = clean()
    data["mri"] += [{"patient_id": "A", "scan_date": f"2013-0{m}-01"} for m in range(1, 4)]  # 3 of 7 scans
    got = findings(tmp_path, data)
    assert not got["mri_counts_empty"]["ok"]
    assert got["mri_counts_empty"]["observed"] == pytest.approx(3 / 7)
