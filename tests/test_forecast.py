"""The pool as a flow (pipeline/recruitment/projection.py): losses, net pool, distinct candidates, screening,
conversion and time to target, checked on populations drawn from known rates.

The truth here is simulated by its own code (`truth` below), not by the projection's simulator: site rates
of new candidates and loss hazards drawn from gamma distributions (site heterogeneity), a history of
24 months, then 12 months to forecast. The projection is fitted on the history only; its 80 % intervals
must hold 70-90 % of what follows over many seeds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json

import numpy as np
import pytest

from pipeline.recruitment import projection as pj
from pipeline.recruitment.history import add_months, history_dates
from pipeline.recruitment.stage import terminal_lines

AS_OF = dt.date(2026, 11, 1)
HIST, AHEAD = 24, 12


def months_of(dates: list[dt.date]) -> np.ndarray:
    return np.array([(b - a).days / pj.MONTH_DAYS for a, b in zip(dates[:-1], dates[1:])])


def truth(rng, lam, haz, pool0, exposure, conversion=None, capacity=None):
    """Month by month at each site: the candidates at the month's start each leave with chance hazard x months,
    new ones arrive (Poisson); with a conversion, waiting candidates (lost at the same hazard) are screened
    (all at once, or up to `capacity` a month) and enrol with the conversion's chance."""
    pool = pool0.copy()
    new_all, lost_all, pools, distinct, enrolled = [], [], [], [], []
    seen = pool0.copy()
    waiting = pool0.copy()
    cum_enrolled = np.zeros_like(pool0)
    if conversion is not None and capacity is None:
        cum_enrolled = rng.binomial(waiting, conversion)
        waiting = np.zeros_like(pool0)
    for e in exposure:
        q = np.minimum(haz * e, 1.0)
        lost = rng.binomial(pool, q)
        new = rng.poisson(lam * e)
        pool = pool - lost + new
        seen = seen + new
        new_all.append(new), lost_all.append(lost), pools.append(pool.copy()), distinct.append(seen.copy())
        if conversion is not None:
            waiting = waiting - rng.binomial(waiting, q) + new
            screened = waiting if capacity is None else np.minimum(waiting, capacity)
            waiting = waiting - screened
            cum_enrolled = cum_enrolled + rng.binomial(screened, conversion)
            enrolled.append(cum_enrolled.copy())
    out = {"new": np.array(new_all).T, "lost": np.array(lost_all).T, "pool": np.array(pools).T,
           "cumulative_candidates": np.array(distinct).T}
    if conversion is not None:
        out["enrolled"] = np.array(enrolled).T
    return out


def population(seed: int, sites: int = 8):
    rng = np.random.default_rng(seed)
    lam = rng.gamma(4.0, 1 / 1.5, sites)  # about 2.7 new candidates a month per site, varying
    haz = rng.gamma(6.0, 1 / 100.0, sites)  # about 6 % of a site's candidates leave each month, varying
    pool0 = rng.poisson(30, sites)
    dates = history_dates(AS_OF, HIST)
    past = truth(rng, lam, haz, pool0, months_of(dates))
    pool = np.concatenate([pool0[:, None], past["pool"]], axis=1)
    flow = pj.Flow([f"S{i}" for i in range(sites)], dates[:-1], dates[1:], past["new"], past["lost"], pool)
    ahead = months_of([add_months(AS_OF, k) for k in range(AHEAD + 1)])
    return rng, lam, haz, flow, ahead


def inside(table, quantity, month, value) -> bool:
    row = table.filter((table["quantity"] == quantity) & (table["site_id"] == pj.TOTAL) & (table["month"] == month))
    return bool(row["low_80"][0] <= value <= row["high_80"][0])


def test_80_percent_intervals_of_pool_distinct_candidates_and_enrolments():
    """Over many populations: net pool, cumulative distinct candidates and enrolments (conversion a range,
    screening capacity limited) at months 3, 6 and 12, all sites together."""
    hits = {"pool": [], "cumulative_candidates": [], "enrolled": []}
    for seed in range(100):
        rng, lam, haz, flow, ahead = population(seed)
        conv = rng.uniform(0.2, 0.4)  # the truth's conversion, somewhere in the range given
        future = truth(rng, lam, haz, flow.pool[:, -1], ahead, conversion=conv, capacity=3)
        p = pj.project(flow, AS_OF, months=AHEAD, conversion=(0.2, 0.4), screening_capacity=3, draws=600, seed=seed)
        for q in hits:
            for m in (3, 6, 12):
                hits[q].append(inside(p.pool_table, q, m, int(future[q][:, m - 1].sum())))
    cover = {q: float(np.mean(v)) for q, v in hits.items()}
    print("coverage of the 80 % intervals:", cover)
    for q, c in cover.items():
        assert 0.7 <= c <= 0.9, (q, c)


def test_losses_are_recovered_and_pooled():
    """The loss hazard's gamma across sites, recovered; small sites pulled towards the others."""
    means = []
    for seed in range(20):
        _, _, haz, flow, _ = population(1000 + seed, sites=20)
        f = pj.fit_hazard(flow.lost.sum(axis=1), flow.candidate_months)
        means.append((f.shape / f.rate).mean() / haz.mean())
    assert 0.85 < np.median(means) < 1.15, means
    # one site with little exposure: its hazard is pulled towards the others'
    f = pj.fit_hazard(np.array([5, 6, 4, 5, 2]), np.array([100.0, 100.0, 100.0, 100.0, 4.0]))
    assert f.method == "marginal_likelihood" and 0.04 < f.shape[-1] / f.rate[-1] < 0.3


def test_no_target_or_no_conversion_no_time_to_target():
    _, _, _, flow, _ = population(3)
    none = pj.project(flow, AS_OF, months=12, conversion=0.3, draws=500).record
    assert none["time_to_target"] is None and none["target"] is None and "no target" in none["time_to_target_reason"]
    assert "enrolled_at_end" in none  # the enrolment curve is still there
    no_conv = pj.project(flow, AS_OF, months=12, target=40, draws=500).record
    assert no_conv["time_to_target"] is None and "no conversion" in no_conv["time_to_target_reason"]
    assert no_conv["conversion"] is None and "enrolled_at_end" not in no_conv
    both = pj.project(flow, AS_OF, months=12, target=40, conversion=0.3, planned_enrolment=1131, draws=500).record
    assert both["time_to_target"]["months_median"] is not None and both["planned_enrolment"] == 1131
    assert both["target"] == 40  # the planned enrolment is context, never the target


def test_conversion_ranges():
    from pipeline.cli import _conversion

    assert _conversion("0.2..0.4") == (0.2, 0.4) and _conversion("20%..40%") == (0.2, 0.4)
    assert _conversion("0.3") == 0.3 and _conversion("0.3..0.3") == 0.3
    for bad in ("0.4..0.2", "0..0.5", "0.2..1.5", "x..0.2"):
        with pytest.raises(argparse.ArgumentTypeError):
            _conversion(bad)
    _, _, _, flow, _ = population(4)
    point = pj.project(flow, AS_OF, months=12, conversion=0.3, draws=2000).record
    ranged = pj.project(flow, AS_OF, months=12, conversion=(0.2, 0.4), draws=2000).record
    assert ranged["conversion"] == [0.2, 0.4] and point["conversion"] == 0.3
    width = lambda r: r["enrolled_at_end"]["high_80"] - r["enrolled_at_end"]["low_80"]  # noqa: E731
    assert width(ranged) > 1.5 * width(point)  # the range is uncertainty, not a point
    assert abs(ranged["enrolled_at_end"]["median"] - point["enrolled_at_end"]["median"]) <= 0.1 * point["enrolled_at_end"]["median"] + 2


def test_screening_capacity_drains_slower():
    _, _, _, flow, _ = population(5)
    free = pj.project(flow, AS_OF, months=12, conversion=0.5, draws=1000).bands["enrolled"]
    slow = pj.project(flow, AS_OF, months=12, conversion=0.5, screening_capacity=1, draws=1000).bands["enrolled"]
    assert free[0]["median"] > 0 and slow[0]["median"] == 0  # unlimited: the pool at D at once
    assert all(s["median"] <= f["median"] for s, f in zip(slow, free))
    assert slow[12]["median"] <= 12 * len(flow.sites) * 0.5 + 5  # at most one screened a site and month
    passed = pj.project(flow, AS_OF, months=12, conversion=0.5, screen_pass=0.5, draws=1000).bands["enrolled"]
    assert 0.35 < passed[12]["median"] / free[12]["median"] < 0.65


def test_deterministic_for_a_fixed_seed():
    _, _, _, flow, _ = population(6)
    a = pj.project(flow, AS_OF, months=12, target=30, conversion=(0.2, 0.4), draws=500)
    b = pj.project(flow, AS_OF, months=12, target=30, conversion=(0.2, 0.4), draws=500)
    assert a.pool_table.equals(b.pool_table) and a.pool_backtest.equals(b.pool_backtest) and a.record == b.record
    c = pj.project(flow, AS_OF, months=12, target=30, conversion=(0.2, 0.4), draws=500, seed=pj.SEED + 1)
    assert not c.pool_table.equals(a.pool_table)


def test_backtest_covers_new_lost_and_pool():
    _, _, _, flow, _ = population(7)
    p = pj.project(flow, AS_OF, months=12, draws=1000)
    q = p.record["backtest"]["quantities"]
    assert set(q) == {"new", "lost", "pool"} and all(0 <= v["coverage_80"] <= 1 for v in q.values())
    assert q["pool"]["observed_last"] == int(flow.pool[:, -2].sum())  # the last full month's end
    rows = p.pool_backtest.filter(p.pool_backtest["quantity"] == "pool")
    assert rows.height == (len(flow.sites) + 1) * 12
    # a pool that collapses a year before D: the back-test of the pool says so
    bad = pj.Flow(flow.sites, flow.starts, flow.ends, flow.counts, flow.lost.copy(), flow.pool.copy())
    bad.lost[:, 15] += bad.pool[:, 15]
    bad.pool[:, 16:] = np.maximum(bad.pool[:, 16:] - bad.pool[:, 15:16], 0)
    r = pj.project(bad, AS_OF, months=12, draws=1000).record
    assert r["backtest"]["quantities"]["pool"]["coverage_80"] < pj.RELIABLE_COVERAGE and r["reliable"] is False


def test_alpha_at_the_bound_is_said_in_words():
    rng = np.random.default_rng(8)
    dates = history_dates(AS_OF, 24)
    counts = rng.poisson(2.0, (6, 24))  # every site at one rate
    pool = np.concatenate([np.zeros((6, 1), int), np.cumsum(counts, axis=1)], axis=1)
    flow = pj.Flow([f"S{i}" for i in range(6)], dates[:-1], dates[1:], counts, np.zeros_like(counts), pool)
    p = pj.project(flow, AS_OF, months=12, draws=500)
    assert p.record["fit"]["alpha_at_upper_bound"] is True
    lines = terminal_lines({"history": {"months": 24, "first_date": "x", "new_candidates": 1, "lost_candidates": 0,
                                        "candidates_first_date": 0, "candidates_last_date": 1},
                            "projection": p.record})
    assert any("one common rate of new candidates" in line for line in lines), lines


def test_hercules_pool_does_not_rise_while_its_history_falls(tmp_path):
    """The sample's HERCULES (nct04411641) at 2026-11-01, 24 months: the pool fell; the forecast must not rise."""
    from pipeline.cli import main

    out = tmp_path / "h"
    assert main(["run", "--input", "data_samples/default", "--out", str(out), "--trial", "nct04411641",
                 "--history", "24", "--as-of", "2026-11-01"]) == 0
    s = json.loads((out / "summary.json").read_text())
    h, p = s["history"], s["projection"]
    assert h["candidates_last_date"] < h["candidates_first_date"]
    assert p["target"] is None and p["time_to_target"] is None and p["conversion"] is None
    assert p["planned_enrolment"] == 1131
    import polars as pl
    pool = pl.read_csv(out / "projection_pool.csv").filter((pl.col("site_id") == pj.TOTAL)
                                                            & (pl.col("quantity") == "pool"))
    assert (pool["median"] <= p["pool"]).all(), pool
    assert (pool["mean"] <= p["pool"] + 1).all(), pool
    assert pool["high_80"].max() < h["candidates_first_date"]
    per_date = pl.read_csv(out / "history_expected.csv")
    assert per_date.height == 25 and per_date["expected_eligible"][-1] == s["expected_eligible"]["expected"]
    assert "expected_eligible" in p["backtest"] and p["backtest"]["expected_eligible"]["date"] == "2025-10-31"
    html = (out / "report.html").read_text()
    assert "the trial plans <span data-projection=\"planned_enrolment\">1,131</span> worldwide" in html
    assert "no time to target" in html


@pytest.mark.parametrize("args", [["--screening-capacity", "3"], ["--screen-pass", "0.5"],
                                  ["--history", "3", "--screen-pass", "0"], ["--history", "3", "--screening-capacity", "0"],
                                  ["--history", "3", "--conversion", "0.5..0.2"]])
def test_forecast_options_are_checked(args, tmp_path):
    from pipeline.cli import main

    try:
        code = main(["run", "--input", "data_samples/default", "--out", str(tmp_path / "r"), *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2 and not (tmp_path / "r").exists()


def test_screening_capacity_per_site_from_a_csv(tmp_path):
    from pipeline.cli import _capacity

    f = tmp_path / "cap.csv"
    f.write_text("site_id,capacity\nS0,1\nS1,2\n")
    assert _capacity(str(f)) == {"S0": 1, "S1": 2} and _capacity("4") == 4
    for bad in ("0", str(tmp_path / "none.csv")):
        with pytest.raises(argparse.ArgumentTypeError):
            _capacity(bad)
    _, _, _, flow, _ = population(9, sites=3)
    p = pj.project(flow, AS_OF, months=12, conversion=1.0, screening_capacity=_capacity(str(f)), draws=300)
    assert p.record["screening_capacity"] == {"S0": 1, "S1": 2, "S2": None}
    screened = p.pool_table.filter((p.pool_table["quantity"] == "screened") & (p.pool_table["month"] == 12))
    by = dict(zip(screened["site_id"].to_list(), screened["high_95"].to_list()))
    assert by["S0"] <= 12 and by["S1"] <= 24 and by["S2"] > 24  # S2 unlimited: its whole pool at once
