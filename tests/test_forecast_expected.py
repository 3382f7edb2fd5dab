"""The expected eligible (pipeline/outputs/expected.py): its 80 % interval holds the realised eligible count at
its nominal rate, on populations whose unknowns are missing at random and then filled from the true rates."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.outputs import expected

IDS = ["a", "b", "c", "d", "e"]
PASS = np.array([0.9, 0.6, 0.75, 0.5, 0.95])
MISSING = np.array([0.05, 0.4, 0.2, 0.3, 0.1])


def population(rng, n=600, sites=4):
    passes = rng.random((n, len(IDS))) < PASS
    missing = rng.random((n, len(IDS))) < MISSING
    cells = np.where(missing, "unknown", np.where(passes, "pass", "fail"))
    fail = (cells == "fail").any(axis=1)
    unknown = (cells == "unknown").any(axis=1)
    status = np.where(fail, "ineligible", np.where(unknown, "possible", "eligible"))
    frame = pl.DataFrame({"patient_id": [f"P{i:05d}" for i in range(n)], "site_id": [f"S{i % sites}" for i in range(n)],
                          "status": status, **{c: cells[:, j] for j, c in enumerate(IDS)}})
    # the truth: each unknown filled from the true rates (missing at random, independent)
    realised = ((~fail) & (passes | ~missing).all(axis=1))
    return frame, realised, np.array([i % sites for i in range(n)])


def test_interval_holds_the_realised_eligible_at_its_nominal_rate():
    hits, site_hits = [], []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        frame, realised, site = population(rng)
        e = expected.estimate(frame, IDS, draws=1000, seed=seed)
        hits.append(e["low_80"] <= realised.sum() <= e["high_80"])
        s0 = e["by_site"]["S0"]
        site_hits.append(s0["low_80"] <= realised[site == 0].sum() <= s0["high_80"])
    print("expected eligible, 80 % coverage: total", np.mean(hits), "one site", np.mean(site_hits))
    assert 0.7 <= np.mean(hits) <= 0.9, np.mean(hits)
    assert 0.7 <= np.mean(site_hits) <= 0.92, np.mean(site_hits)


def test_point_estimate_is_the_sum_of_chances():
    frame = pl.DataFrame({"patient_id": ["1", "2", "3", "4", "5", "6"], "site_id": ["A", "A", "B", "B", "B", "B"],
                          "status": ["eligible", "possible", "possible", "ineligible", "eligible", "possible"],
                          "a": ["pass", "unknown", "unknown", "fail", "pass", "pass"],
                          "b": ["pass", "unknown", "pass", "pass", "pass", "screening"]})
    e = expected.estimate(frame, ["a", "b"], draws=200)
    ra, rb = 3 / 4, 1.0  # a: pass, fail, pass, pass where known; b: passes wherever known
    assert e["criteria"]["a"] == {"known": 4, "pass": 3, "rate": 0.75}
    assert e["criteria"]["b"] == {"known": 4, "pass": 4, "rate": 1.0}
    # patient 2: a and b unknown; patient 3: a unknown; patient 6: nothing unknown but screening
    assert e["expected"] == round(2 + ra * rb + ra + 1, 2)
    assert e["by_site"]["A"]["expected"] == round(1 + ra * rb, 2) and e["eligible"] == 2 and e["possible"] == 3


def test_site_column_is_suppressed_as_the_counts():
    sites = pl.DataFrame({"site_id": ["A", "B", "C", "D"], "eligible": ["10", "<5", "12", "30"],
                          "possible": ["20", "8", "*", "40"]})
    e = {"by_site": {"A": {"expected": 14.4}, "B": {"expected": 3.0}, "C": {"expected": 3.2}, "D": {"expected": 51.0}}}
    assert expected.site_column(e, sites, 5).to_list() == ["14", "*", "*", "51"]
    one = sites.with_columns(pl.Series("possible", ["20", "8", "9", "40"]))
    # B hidden with its counts, C small (<5): two figures hidden, the total cannot give either back
    assert expected.site_column(e, one, 5).to_list() == ["14", "*", "<5", "51"]
    big = {"by_site": {**e["by_site"], "C": {"expected": 9.0}}}
    # only B hidden: the next smallest (C) is hidden too
    assert expected.site_column(big, one, 5).to_list() == ["14", "*", "*", "51"]


def test_learnt_later_compares_with_what_became_known():
    before = pl.DataFrame({"patient_id": ["1", "2", "3", "4", "5"], "site_id": ["A"] * 5,
                           "status": ["possible", "possible", "possible", "eligible", "ineligible"],
                           "a": ["unknown", "unknown", "unknown", "pass", "fail"],
                           "b": ["pass", "unknown", "pass", "pass", "pass"]})
    after = pl.DataFrame({"patient_id": ["1", "2", "3", "4", "5"], "site_id": ["A"] * 5,
                          "status": ["eligible", "possible", "ineligible", "eligible", "ineligible"],
                          "a": ["pass", "pass", "fail", "pass", "fail"],
                          "b": ["pass", "unknown", "pass", "pass", "pass"]})
    got = expected.learnt_later(before, after, ["a", "b"], draws=500)
    # 1 and 3 were resolved (2 still has b unknown); 1 passed; the rate of a at `before`: 1 of 2
    assert got["patients"] == 2 and got["observed"] == 1 and got["expected"] == 1.0
    assert got["low_80"] <= 1 <= got["high_80"] and got["inside_80"]


def test_learnt_later_holds_at_its_nominal_rate():
    """Unknowns missing at random, learnt later from the true rates: the interval holds the number that pass."""
    hits = []
    for seed in range(150):
        rng = np.random.default_rng(10_000 + seed)
        frame, realised, _ = population(rng, n=800)
        after = frame.with_columns([pl.when(pl.col(c) == "unknown")
                                    .then(pl.Series([("pass" if x else "fail") for x in rng.random(frame.height) < PASS[j]]))
                                    .otherwise(pl.col(c)).alias(c) for j, c in enumerate(IDS)])
        got = expected.learnt_later(frame, after, IDS, draws=800, seed=seed)
        hits.append(got["inside_80"])
    print("learnt later, 80 % coverage:", np.mean(hits))
    assert 0.7 <= np.mean(hits) <= 0.92, np.mean(hits)
