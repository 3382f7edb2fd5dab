"""progression_on_therapy: confirmed EDSS worsening within a line 1/2 episode, case by case, both engines."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import evaluate_export, status_of, write_export

D = dt.date(2024, 6, 30)
START = "2020-01-01"  # window opens 2020-03-31 (start + 90 days)

# patient -> (treatments [(drug, start, end)], visits [(date, edss)], relapse onsets, expected)
CASES = {
    "confirmed_at_84": ([("Tysabri", START, None)], [("2019-12-01", 2.0), ("2021-01-01", 3.0), ("2021-03-26", 3.0)], [], "pass"),
    "confirm_at_83_pending": ([("Tysabri", START, None)], [("2019-12-01", 2.0), ("2021-01-01", 3.0), ("2021-03-25", 3.0)], [], "unknown"),
    "intermediate_drop": ([("Tysabri", START, None)], [("2019-12-01", 2.0), ("2021-01-01", 3.0), ("2021-02-01", 2.5),
                                                         ("2021-04-01", 3.0), ("2021-09-01", 2.0)], [], "fail"),
    "baseline_after_start": ([("Avonex", START, None)], [("2020-01-31", 2.0), ("2021-01-01", 3.0), ("2021-06-01", 3.0)], [], "pass"),
    "baseline_at_start_plus_90": ([("Avonex", START, None)], [("2020-03-31", 2.0), ("2021-01-01", 3.0), ("2021-06-01", 3.0)], [], "pass"),
    "baseline_too_late": ([("Avonex", START, None)], [("2020-04-01", 2.0), ("2021-01-01", 3.0), ("2021-06-01", 3.0)], [], "unknown"),
    "baseline_too_early": ([("Avonex", START, None)], [("2018-12-31", 2.0), ("2021-01-01", 3.0), ("2021-06-01", 3.0)], [], "unknown"),
    "relapse_window": ([("Tysabri", START, None)], [("2019-12-01", 2.0), ("2021-01-10", 3.0), ("2021-05-01", 3.0),
                                                      ("2021-10-01", 2.0)], ["2021-01-01"], "fail"),
    "relapse_31_days_before": ([("Tysabri", START, None)], [("2019-12-01", 2.0), ("2021-01-10", 3.0), ("2021-05-01", 3.0),
                                                              ("2021-10-01", 2.0)], ["2020-12-10"], "pass"),
    "too_short_episode": ([("Tysabri", START, "2020-03-30")], [("2019-12-01", 2.0), ("2021-01-01", 3.0), ("2021-06-01", 3.0)], [], "fail"),
    "confirm_after_episode_end": ([("Tysabri", START, "2021-02-01")], [("2019-12-01", 2.0), ("2021-01-01", 3.0), ("2021-04-01", 3.0)], [], "pass"),
    "worsening_after_episode_end": ([("Tysabri", START, "2020-12-31")], [("2019-12-01", 2.0), ("2021-01-01", 3.0), ("2021-04-01", 3.0)], [], "unknown"),
    "baseline_6_half_point": ([("Ocrevus", START, None)], [("2019-12-01", 6.0), ("2021-01-01", 6.5), ("2021-06-01", 6.5)], [], "pass"),
    "baseline_55_needs_one": ([("Ocrevus", START, None)], [("2019-12-01", 5.5), ("2021-01-01", 6.0), ("2021-06-01", 6.0), ("2021-12-01", 6.0)], [], "fail"),
    "no_episode": ([], [("2019-12-01", 2.0), ("2021-01-01", 3.0), ("2021-06-01", 3.0)], [], "fail"),
    "other_line_only": ([("Novantrone", START, None)], [("2019-12-01", 2.0), ("2021-01-01", 3.0), ("2021-06-01", 3.0)], [], "fail"),
    "only_after_d": ([("Tysabri", START, None)], [("2019-12-01", 2.0), ("2024-08-01", 4.0), ("2024-12-01", 4.0)], [], "unknown"),
    "start_after_d": ([("Tysabri", "2024-07-01", None)], [("2024-06-01", 2.0)], [], "fail"),
    "stable": ([("Tysabri", START, None)], [("2019-12-01", 2.0), ("2021-01-01", 2.0), ("2022-01-01", 2.5)], [], "fail"),
    "same_day_highest": ([("Tysabri", START, None)], [("2019-12-01", 2.0), ("2021-01-01", 2.0), ("2021-01-01", 3.0),
                                                        ("2021-06-01", 3.0)], [], "pass"),
    "one_of_two_episodes": ([("Avonex", "2015-01-01", "2015-02-01"), ("Tysabri", START, None)],
                            [("2019-12-01", 2.0), ("2021-01-01", 3.0), ("2021-06-01", 3.0)], [], "pass"),
}


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    tables = {"patients": [], "visits": [], "treatments": [], "relapses": []}
    for pid, (treat, visits, relapses, _) in CASES.items():
        tables["patients"].append({"patient_id": pid, "site_id": "S", "sex": "F", "birth_date": "1980-01-01",
                                   "onset_date": "2015-01-01", "ms_course": "RRMS", "research_consent": "Y"})
        tables["treatments"] += [{"patient_id": pid, "drug": d, "start_date": s, "end_date": e} for d, s, e in treat]
        tables["visits"] += [{"patient_id": pid, "visit_date": d, "edss": e} for d, e in visits]
        tables["relapses"] += [{"patient_id": pid, "onset_date": o} for o in relapses]
    folder = write_export(tmp_path_factory.mktemp("prog") / "export", tables)
    return {e: evaluate_export(folder, e, D) for e in ("polars", "duckdb")}


@pytest.mark.parametrize("pid", list(CASES))
def test_progression_case(evaluations, engine, pid):
    assert status_of(evaluations[engine], "progression_on_therapy")[pid] == CASES[pid][3]


def test_evidence_names_the_episode(evaluations, engine):
    row = evaluations[engine].filter(patient_id="confirmed_at_84").row(0, named=True)
    assert row["progression_on_therapy__drug"] == "natalizumab"
    assert row["progression_on_therapy__baseline_edss"] == 2.0
    assert str(row["progression_on_therapy__worsening_date"]) == "2021-01-01"
    assert str(row["progression_on_therapy__confirmed_date"]) == "2021-03-26"


def test_engines_identical(evaluations):
    assert evaluations["polars"].equals(evaluations["duckdb"])
