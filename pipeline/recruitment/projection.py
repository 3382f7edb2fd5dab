"""Projection of new candidates per site, time to target and its back-test (Poisson-gamma, empirical Bayes).

The model (Anisimov and Fedorov 2007, applied to the flow of *new candidates* rather
than of enrolments):

- site i produces new candidates as a Poisson process of constant rate lambda_i per
  month (a month is 365.25/12 days; an interval of d days has an exposure of d / 30.44
  months), independent across sites;
- the rates vary across sites as a gamma distribution, shape alpha and rate beta, whose
  two parameters are fitted across the sites by empirical Bayes: **maximum marginal
  likelihood** (type-II maximum likelihood; each site's count over the history is
  negative binomial given alpha and beta). Every site has the same exposure (the same
  dates), so for a given alpha the best beta is alpha * E / mean(Y) in closed form and
  alpha is found on a log grid refined by golden section. Method of moments was not
  used: with a handful of sites it often gives a negative variance. A site's rate given
  its history is then gamma(alpha + Y_i, beta + E) (shrunk towards the mean of the sites).
  When the history cannot fit a gamma across sites (one site, or no new candidate at
  all), each site gets its own Jeffreys posterior gamma(Y_i + 1/2, E) instead;
- predictive counts: a rate drawn from each site's posterior, then Poisson counts for
  each future month with that rate (negative binomial per cell; one rate per site and
  draw, so a site's months are correlated as they should be). Simulated with a fixed
  seed, `DRAWS` draws, vectorised. Intervals are the draws' quantiles (inverted CDF, so
  an interval's ends are counts the model can produce): 80 % = [q10, q90], 95 % =
  [q2.5, q97.5]. The expected count is exact (posterior mean rate times exposure).

Time to target: `needed` = the smallest number of candidates that, times the conversion,
reaches the target. The current pool (candidates at D) counts at once; each draw's
cumulative new candidates are added month by month until the pool plus them reach
`needed`; median and 80 % interval over the draws (not reached within
`MAX_MONTHS_TO_TARGET` months: reported as such). Losses (candidates who stop being
candidates before being approached) are not subtracted.

Back-test: the same fit on the history up to D minus 12 months, projected over the full
months of the history after it, compared with what the history shows there: coverage is
the share of (month, site) cells inside their 80 % interval. A projection whose
back-test coverage is below `RELIABLE_COVERAGE` is labelled unreliable.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.recruitment.history import add_months

MONTH_DAYS = 365.25 / 12
SEED = 20261124
DRAWS = 4000
MAX_MONTHS_TO_TARGET = 120
BACKTEST_MONTHS = 12
MIN_FIT_MONTHS = 6
FULL_MONTH_DAYS = 28
RELIABLE_COVERAGE = 0.6
ALPHA_GRID = np.logspace(-3, 6, 721)
TOTAL = "TOTAL"
LEVELS = {"low_80": 0.10, "high_80": 0.90, "low_95": 0.025, "high_95": 0.975}


@dataclass
class Flow:
    """New candidates per site (rows) and interval (columns); every site has the same intervals."""
    sites: list[str]
    starts: list[dt.date]
    ends: list[dt.date]
    counts: np.ndarray  # (sites, intervals), int64

    @property
    def exposure(self) -> np.ndarray:
        """Each interval's length in months of 365.25/12 days."""
        return np.array([(e - s).days / MONTH_DAYS for s, e in zip(self.starts, self.ends)], dtype=float)

    def take(self, keep: np.ndarray) -> Flow:
        idx = np.flatnonzero(keep)
        return Flow(self.sites, [self.starts[i] for i in idx], [self.ends[i] for i in idx], self.counts[:, idx])

    @classmethod
    def from_history(cls, by_site: pl.DataFrame, dates: list[dt.date]) -> Flow:
        """From history_by_site (as_of, site_id, ..., new_candidates) at `dates`: the intervals between
        consecutive dates."""
        sites = sorted(set(by_site["site_id"].to_list()))
        counts = np.zeros((len(sites), len(dates) - 1), dtype=np.int64)
        pos = {d: j - 1 for j, d in enumerate(dates)}
        row = {s: i for i, s in enumerate(sites)}
        for day, site, n in by_site.filter(pl.col("as_of") > dates[0]).select("as_of", "site_id",
                                                                                "new_candidates").iter_rows():
            counts[row[site], pos[day]] = n
        return cls(sites, list(dates[:-1]), list(dates[1:]), counts)


@dataclass
class Fit:
    method: str  # "marginal_likelihood" or "jeffreys"
    alpha: float | None
    beta: float | None
    shape: np.ndarray  # per site: the posterior gamma of its rate (per month)
    rate: np.ndarray
    months: float  # exposure of the history fitted, in months
    new_candidates: int
    at_bound: bool = False

    def record(self, sites: list[str]) -> dict:
        return {
            "method": self.method,
            "alpha": None if self.alpha is None else _r(self.alpha),
            "beta": None if self.beta is None else _r(self.beta),
            "alpha_at_upper_bound": self.at_bound,
            "mean_rate_per_month": None if self.alpha is None else _r(self.alpha / self.beta),
            "history_months": _r(self.months), "new_candidates": self.new_candidates,
            "site_rates_per_month": {s: _r(a / b) for s, a, b in zip(sites, self.shape, self.rate)},
        }


def _r(x: float, digits: int = 6) -> float:
    return float(f"{float(x):.{digits}g}")


_lgamma = np.vectorize(math.lgamma, otypes=[float])


def profile_loglik(alpha: np.ndarray, y: np.ndarray, exposure: float) -> np.ndarray:
    """Log marginal likelihood of site totals `y` (same exposure), beta at its best for each alpha.

    Each y_i ~ NegBin(alpha, beta / (beta + E)); for a given alpha the likelihood is largest
    at beta = alpha * E / mean(y). Terms that do not depend on alpha or beta are left out.
    """
    alpha = np.atleast_1d(np.asarray(alpha, dtype=float))[:, None]
    ybar = y.mean()
    beta = alpha * exposure / ybar
    return (_lgamma(alpha + y[None, :]) - _lgamma(alpha) + alpha * np.log(beta)
            - (alpha + y[None, :]) * np.log(beta + exposure)).sum(axis=1)


def fit(flow: Flow) -> Fit:
    """The gamma across sites by maximum marginal likelihood, and each site's posterior rate."""
    y = flow.counts.sum(axis=1).astype(float)
    e = float(flow.exposure.sum())
    total = int(y.sum())
    if len(y) < 2 or total == 0 or e <= 0:
        return Fit("jeffreys", None, None, y + 0.5, np.full(len(y), max(e, 1e-9)), e, total)
    ll = profile_loglik(ALPHA_GRID, y, e)
    i = int(np.argmax(ll))
    at_bound = i == len(ALPHA_GRID) - 1
    if 0 < i < len(ALPHA_GRID) - 1:  # golden section on log alpha between the neighbours
        lo, hi = math.log(ALPHA_GRID[i - 1]), math.log(ALPHA_GRID[i + 1])
        g = (math.sqrt(5) - 1) / 2
        for _ in range(60):
            a, b = hi - g * (hi - lo), lo + g * (hi - lo)
            fa, fb = profile_loglik(np.exp([a, b]), y, e)
            if fa >= fb:
                hi = b
            else:
                lo = a
        alpha = math.exp((lo + hi) / 2)
    else:
        alpha = float(ALPHA_GRID[i])
    beta = alpha * e / y.mean()
    return Fit("marginal_likelihood", alpha, beta, alpha + y, np.full(len(y), beta + e), e, total, at_bound)


def simulate(f: Fit, exposure: np.ndarray, draws: int = DRAWS, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(rates per draw and site, counts per draw, site and interval), from the posterior predictive."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(f.shape[None, :], 1.0 / f.rate[None, :], size=(draws, len(f.shape)))
    return lam, rng.poisson(lam[:, :, None] * exposure[None, None, :])


def quantile_index(q: float, n: int) -> int:
    """The position in n sorted draws of the q-quantile by the inverted empirical CDF: the smallest
    value with at least q*n draws at or below it (numpy's method="inverted_cdf")."""
    return min(n - 1, max(0, math.ceil(q * n - 1e-9) - 1))


def quantiles(x: np.ndarray, levels: dict[str, float] = LEVELS) -> dict[str, np.ndarray]:
    """The 80 % and 95 % interval ends over the draws (axis 0), as counts the model produces (one sort)."""
    s = np.sort(x, axis=0)
    return {k: s[quantile_index(q, len(s))].astype(np.int64) for k, q in levels.items()}


def _cells(sites: list[str], ends: list[dt.date], expected: np.ndarray, sim: np.ndarray) -> pl.DataFrame:
    """One row per interval and site, then a TOTAL row per interval."""
    q = quantiles(sim)  # (sites, intervals)
    qt = quantiles(sim.sum(axis=1))  # (intervals,)
    rows = []
    for j, end in enumerate(ends):
        for i, s in enumerate(sites):
            rows.append({"end_date": end, "site_id": s, "expected_new_candidates": round(float(expected[i, j]), 3),
                         **{k: int(v[i, j]) for k, v in q.items()}})
        rows.append({"end_date": end, "site_id": TOTAL, "expected_new_candidates": round(float(expected[:, j].sum()), 3),
                     **{k: int(v[j]) for k, v in qt.items()}})
    return pl.DataFrame(rows, schema={"end_date": pl.Date, "site_id": pl.Utf8, "expected_new_candidates": pl.Float64,
                                      **{k: pl.Int64 for k in LEVELS}})


def needed_candidates(target: int, conversion: float) -> int:
    """The fewest candidates that, times the conversion, make the target."""
    return max(0, math.ceil(target / conversion - 1e-9))


def months_to(pool: int, monthly_totals: np.ndarray, needed: int) -> np.ndarray:
    """Per draw, the first month (1, 2, ...) when the pool plus cumulative new candidates reach `needed`
    (0 when the pool alone does; inf when not within the months given)."""
    if pool >= needed:
        return np.zeros(monthly_totals.shape[0])
    reached = np.cumsum(monthly_totals, axis=1) >= needed - pool
    first = np.argmax(reached, axis=1).astype(float) + 1
    first[~reached.any(axis=1)] = np.inf
    return first


def _month(x: float) -> int | None:
    return None if math.isinf(x) else int(x)


@dataclass
class Projection:
    table: pl.DataFrame  # projection.csv
    backtest: pl.DataFrame | None  # projection_backtest.csv
    record: dict  # summary.json `projection`
    fan: list[dict]  # the report's fan: month, cumulative candidates (pool + new) quantiles


def project(flow: Flow, as_of: dt.date, pool: int, months: int = 12, target: int | None = None,
            conversion: float = 1.0, target_source: str | None = None, seed: int = SEED,
            draws: int = DRAWS) -> Projection:
    f = fit(flow)
    ends = [add_months(as_of, k) for k in range(0, max(months, MAX_MONTHS_TO_TARGET) + 1)]
    exposure = np.array([(b - a).days / MONTH_DAYS for a, b in zip(ends[:-1], ends[1:])])
    lam, sim = simulate(f, exposure[:months], draws, seed)
    expected = (f.shape / f.rate)[:, None] * exposure[None, :months]
    table = _cells(flow.sites, ends[1:months + 1], expected, sim).with_columns(
        pl.col("end_date").rank("dense").cast(pl.Int64).alias("month")).select(
        "month", "end_date", "site_id", "expected_new_candidates", *LEVELS)
    totals = sim.sum(axis=1)  # (draws, months)
    cum = pool + np.cumsum(totals, axis=1)
    qc = quantiles(cum)
    fan = [{"month": 0, "end_date": as_of.isoformat(), "median": pool, "expected": float(pool),
            **{k: pool for k in LEVELS}}]
    exp_cum = pool + np.cumsum(expected.sum(axis=0))
    med = quantiles(cum, {"median": 0.5})["median"]
    for j in range(months):
        fan.append({"month": j + 1, "end_date": ends[j + 1].isoformat(), "median": int(med[j]),
                    "expected": round(float(exp_cum[j]), 3), **{k: int(v[j]) for k, v in qc.items()}})
    record = {
        "model": "Poisson-gamma: site rates gamma-distributed across sites (empirical Bayes, maximum marginal "
                 "likelihood); negative binomial predictive counts, simulated",
        "fit": f.record(flow.sites),
        "months": months, "draws": draws, "seed": seed,
        "pool": pool,
        "expected_new_candidates": round(float(expected.sum()), 3),
        "new_candidates_80": [int(v) for v in quantiles(totals.sum(axis=1), {"lo": 0.1, "hi": 0.9}).values()],
        "target": target, "target_source": target_source, "conversion": conversion,
        "time_to_target": None,
    }
    if target is not None:
        needed = needed_candidates(target, conversion)
        # Beyond the projected months the same draws go on (each draw keeps its site rates).
        rng = np.random.default_rng([seed, 1])
        later = rng.poisson(lam.sum(axis=1)[:, None] * exposure[None, months:])
        m = months_to(pool, np.concatenate([totals, later], axis=1), needed)
        s = np.sort(m)
        median, low, high = (float(s[quantile_index(q, len(s))]) for q in (0.5, 0.1, 0.9))
        record["time_to_target"] = {
            "candidates_needed": needed, "months_median": _month(median), "months_low_80": _month(low),
            "months_high_80": _month(high), "max_months": MAX_MONTHS_TO_TARGET,
            "share_reached_within_max": round(float(np.isfinite(m).mean()), 4),
            "date_median": None if math.isinf(median) else ends[int(median)].isoformat(),
        }
    bt_table, bt_record = backtest(flow, as_of, seed, draws)
    record["backtest"] = bt_record
    cov = bt_record.get("coverage_80")
    record["reliable"] = None if cov is None else cov >= RELIABLE_COVERAGE
    return Projection(table, bt_table, record, fan)


def backtest(flow: Flow, as_of: dt.date, seed: int = SEED, draws: int = DRAWS) -> tuple[pl.DataFrame | None, dict]:
    """Fit on the history up to D minus 12 months, project its full months after that, compare."""
    cut = add_months(as_of, -BACKTEST_MONTHS)
    ends = np.array(flow.ends, dtype="datetime64[D]")
    days = np.array([(e - s).days for s, e in zip(flow.starts, flow.ends)])
    train = ends <= np.datetime64(cut)
    test = (~train) & (days >= FULL_MONTH_DAYS)
    rec = {"fit_until": cut.isoformat(), "fit_months": int(train.sum()), "test_months": int(test.sum()),
           "coverage_80": None, "coverage_95": None}
    if not flow.sites:
        rec["available"] = False
        rec["reason"] = "no site has a patient"
        return None, rec
    if train.sum() < MIN_FIT_MONTHS or test.sum() == 0:
        rec["available"] = False
        rec["reason"] = (f"the back-test needs {MIN_FIT_MONTHS} months of history to fit before "
                         f"{cut.isoformat()} and a full month after it (--history {BACKTEST_MONTHS + MIN_FIT_MONTHS + 1} "
                         "or more)")
        return None, rec
    fit_flow, test_flow = flow.take(train), flow.take(test)
    f = fit(fit_flow)
    exposure = test_flow.exposure
    _, sim = simulate(f, exposure, draws, seed)
    expected = (f.shape / f.rate)[:, None] * exposure[None, :]
    table = _cells(flow.sites, test_flow.ends, expected, sim)
    observed = np.concatenate([np.vstack([test_flow.counts, test_flow.counts.sum(axis=0, keepdims=True)])[:, j]
                               for j in range(len(test_flow.ends))])
    table = table.with_columns(pl.Series("observed", observed, dtype=pl.Int64))
    table = table.with_columns(
        ((pl.col("observed") >= pl.col("low_80")) & (pl.col("observed") <= pl.col("high_80"))).alias("inside_80"),
        ((pl.col("observed") >= pl.col("low_95")) & (pl.col("observed") <= pl.col("high_95"))).alias("inside_95"),
    ).select("end_date", "site_id", "observed", "expected_new_candidates", *LEVELS, "inside_80", "inside_95")
    sites = table.filter(pl.col("site_id") != TOTAL)
    total = table.filter(pl.col("site_id") == TOTAL)
    # What a correct model would score with these (discrete) intervals: the draws' own share inside.
    q = quantiles(sim)
    own80 = ((sim >= q["low_80"][None]) & (sim <= q["high_80"][None])).mean()
    rec.update({
        "available": True, "cells": sites.height,
        "coverage_80": round(float(sites["inside_80"].mean()), 4),
        "coverage_95": round(float(sites["inside_95"].mean()), 4),
        "model_coverage_80": round(float(own80), 4),
        "total_coverage_80": round(float(total["inside_80"].mean()), 4),
        "observed_new_candidates": int(test_flow.counts.sum()),
        "expected_new_candidates": round(float(expected.sum()), 3),
        "fit": f.record(flow.sites),
    })
    return table, rec
