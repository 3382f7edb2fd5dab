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

The pool as a flow (`simulate_pool`): candidates also leave, at a hazard per candidate-month
per site (`fit_hazard`: gamma across sites by maximum marginal likelihood with each site's own
exposure, the candidates at each month's start times the month's length); each draw takes a
rate and a hazard per site, then month by month pool = pool - Binomial(pool, min(1, h x
months)) + Poisson(rate x months): the net pool, new, lost and distinct candidates, per site
and all together (`projection_pool.csv`). With a conversion (one value, or a range drawn per
simulation), candidates are screened (all at once, or up to a capacity per site and month,
losing candidates meanwhile) and enrol with chance eligible x screen-pass x conversion.

Time to target: per draw, the first month (0 = D) when the cumulative enrolments reach the
target, this registry's share; median and 80 % interval (not reached within
`MAX_MONTHS_TO_TARGET` months: reported as such). No target, or no conversion: none. The
trial's planned enrolment is recorded for context only. docs/forecast.md has the whole model.

Back-test: the same fits on the history up to D minus 12 months, projected over the full
months of the history after it from the pool at the cut, compared with what the history shows
there for new candidates, losses and the net pool: coverage is the share of (month, site)
cells inside their 80 % interval. A projection with any of the three below
`RELIABLE_COVERAGE` is labelled unreliable.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.special import gammaln

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
UNLIMITED = 10**12  # a site's screening capacity when none is given for it
LEVELS = {"low_80": 0.10, "high_80": 0.90, "low_95": 0.025, "high_95": 0.975}


@dataclass
class Flow:
    """New candidates per site (rows) and interval (columns); every site has the same intervals.

    `lost` (same shape) are the candidates lost in each interval, `pool` (sites, intervals + 1) the
    candidates at each date (the start of each interval, then the end of the last). Both are
    optional (zeros) for callers that only model new candidates.
    """
    sites: list[str]
    starts: list[dt.date]
    ends: list[dt.date]
    counts: np.ndarray  # (sites, intervals), int64
    lost: np.ndarray | None = None  # (sites, intervals), int64
    pool: np.ndarray | None = None  # (sites, intervals + 1), int64

    def __post_init__(self) -> None:
        if self.lost is None:
            self.lost = np.zeros_like(self.counts)
        if self.pool is None:
            self.pool = np.zeros((self.counts.shape[0], self.counts.shape[1] + 1), dtype=np.int64)

    @property
    def exposure(self) -> np.ndarray:
        """Each interval's length in months of 365.25/12 days."""
        return np.array([(e - s).days / MONTH_DAYS for s, e in zip(self.starts, self.ends)], dtype=float)

    @property
    def candidate_months(self) -> np.ndarray:
        """Per site: the candidates at the start of each interval times its length (the losses' exposure)."""
        return (self.pool[:, :-1] * self.exposure[None, :]).sum(axis=1)

    def take(self, keep: np.ndarray) -> Flow:
        idx = np.flatnonzero(keep)
        return Flow(self.sites, [self.starts[i] for i in idx], [self.ends[i] for i in idx], self.counts[:, idx],
                    self.lost[:, idx], np.concatenate([self.pool[:, idx], self.pool[:, idx[-1:] + 1]], axis=1)
                    if len(idx) else self.pool[:, :1])

    @classmethod
    def from_history(cls, by_site: pl.DataFrame, dates: list[dt.date]) -> Flow:
        """From history_by_site (as_of, site_id, eligible, possible, ..., new_candidates, lost_candidates) at
        `dates`: the intervals between consecutive dates."""
        sites = sorted(set(by_site["site_id"].to_list()))
        counts = np.zeros((len(sites), len(dates) - 1), dtype=np.int64)
        lost = np.zeros_like(counts)
        pool = np.zeros((len(sites), len(dates)), dtype=np.int64)
        col = {d: j for j, d in enumerate(dates)}
        row = {s: i for i, s in enumerate(sites)}
        has_lost = "lost_candidates" in by_site.columns
        has_pool = "eligible" in by_site.columns and "possible" in by_site.columns
        frame = by_site.select(
            "as_of", "site_id", "new_candidates",
            pl.col("lost_candidates") if has_lost else pl.lit(0).alias("lost_candidates"),
            (pl.col("eligible") + pl.col("possible")).alias("pool") if has_pool else pl.lit(0).alias("pool"))
        for day, site, n, m, k in frame.iter_rows():
            j = col.get(day)
            if j is None:
                continue
            pool[row[site], j] = k
            if j > 0:
                counts[row[site], j - 1] = n or 0
                lost[row[site], j - 1] = m or 0
        return cls(sites, list(dates[:-1]), list(dates[1:]), counts, lost, pool)


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
    n_used: int = 0  # sites the gamma across sites was fitted on
    mean_exposure: float = 0.0  # their mean exposure

    def draw(self, rng: np.random.Generator, draws: int) -> np.ndarray:
        """Rates per draw (rows) and site (columns) from the posteriors. With a gamma across sites, the level of
        that gamma is also drawn, from an approximate posterior of its mean alpha / beta (a gamma with the mean's
        sampling variance, (mu / E + mu^2 / alpha) / n), and each site's rate then from gamma(alpha + y_i,
        alpha / mu_draw + E_i): without it, a fit at its bound (every site at one rate) would hold that common
        rate as known exactly and the intervals would be too narrow."""
        if self.alpha is None or self.n_used < 1 or self.mean_exposure <= 0:
            return rng.gamma(self.shape[None, :], 1.0 / self.rate[None, :], size=(draws, len(self.shape)))
        mu = self.alpha / self.beta
        var = (mu / self.mean_exposure + mu * mu / self.alpha) / self.n_used
        k = mu * mu / var
        mu_d = rng.gamma(k, mu / k, size=draws)
        y, e = self.shape - self.alpha, self.rate - self.beta
        return rng.gamma(np.broadcast_to((self.alpha + y)[None, :], (draws, len(y))),
                         1.0 / (self.alpha / mu_d[:, None] + e[None, :]))

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
    return Fit("marginal_likelihood", alpha, beta, alpha + y, np.full(len(y), beta + e), e, total, at_bound,
               len(y), e)


def simulate(f: Fit, exposure: np.ndarray, draws: int = DRAWS, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(rates per draw and site, counts per draw, site and interval), from the posterior predictive."""
    rng = np.random.default_rng(seed)
    lam = f.draw(rng, draws)
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


def first_month(cumulative: np.ndarray, target: int) -> np.ndarray:
    """Per draw (rows), the first column (month 0, 1, ...) where `cumulative` reaches `target`; inf if never."""
    reached = cumulative >= target
    first = np.argmax(reached, axis=1).astype(float)
    first[~reached.any(axis=1)] = np.inf
    return first


def _month(x: float) -> int | None:
    return None if math.isinf(x) else int(x)


# ---- losses: a hazard per candidate-month, gamma across sites (empirical Bayes) ----

def hazard_loglik(alpha: np.ndarray, beta: np.ndarray, y: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Log marginal likelihood (without constants) of losses y_i over exposures e_i (candidate-months),
    each Poisson(h_i e_i) with h_i ~ gamma(alpha, beta); alpha and beta broadcast together (vectors)."""
    a, b = alpha[:, None], beta[:, None]
    return (gammaln(a + y[None, :]) - gammaln(a) + a * np.log(b) - (a + y[None, :]) * np.log(b + e[None, :])).sum(axis=1)


def _best_beta(alpha: np.ndarray, y: np.ndarray, e: np.ndarray) -> np.ndarray:
    """For each alpha, the beta maximising the marginal likelihood: the root of
    n alpha / beta = sum (alpha + y_i) / (beta + e_i), by bisection on log beta (vectorised over alpha)."""
    lo = np.full(alpha.shape, math.log(1e-9 * max(e.max(), 1e-9)))
    hi = np.full(alpha.shape, math.log(1e12 * max(e.max(), 1e-9)))
    n = len(y)
    for _ in range(80):
        mid = (lo + hi) / 2
        b = np.exp(mid)[:, None]
        g = n * alpha / b[:, 0] - ((alpha[:, None] + y[None, :]) / (b + e[None, :])).sum(axis=1)
        up = g > 0  # the derivative still positive: the root is above
        lo = np.where(up, mid, lo)
        hi = np.where(up, hi, mid)
    return np.exp((lo + hi) / 2)


def fit_hazard(lost: np.ndarray, exposure: np.ndarray) -> Fit:
    """The loss hazard per candidate-month: gamma(alpha, beta) across sites by maximum marginal likelihood
    (exposures differ by site, so beta is found numerically for each alpha of the grid); a site's hazard is
    then gamma(alpha + lost_i, beta + candidate-months_i). A site that never had a candidate gets the
    distribution across sites. With fewer than two sites with candidates, or no loss at all, each site gets
    the Jeffreys posterior of the sites pooled, gamma(lost + 1/2, candidate-months)."""
    y = lost.astype(float)
    e = exposure.astype(float)
    total, months = int(y.sum()), float(e.sum())
    used = e > 0
    if used.sum() < 2 or total == 0:
        shape = np.full(len(y), total + 0.5)
        rate = np.full(len(y), months if months > 0 else 1.0)
        return Fit("jeffreys", None, None, shape, rate, months, total)
    yu, eu = y[used], e[used]
    beta = _best_beta(ALPHA_GRID, yu, eu)
    ll = hazard_loglik(ALPHA_GRID, beta, yu, eu)
    i = int(np.argmax(ll))
    alpha, b = float(ALPHA_GRID[i]), float(beta[i])
    return Fit("marginal_likelihood", alpha, b, alpha + y, b + e, months, total, i == len(ALPHA_GRID) - 1,
               int(used.sum()), float(eu.mean()))


# ---- the pool month by month: arrivals, losses, screening and enrolment, simulated together ----

@dataclass
class Conversion:
    """The chance that a screened patient who passes screening consents and enrols: one value, or a range
    taken as uncertainty (each simulation draws its value uniformly within it)."""
    low: float
    high: float

    @classmethod
    def parse(cls, value) -> Conversion | None:
        if value is None or isinstance(value, Conversion):
            return value
        if isinstance(value, (tuple, list)):
            return cls(float(value[0]), float(value[1]))
        return cls(float(value), float(value))

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.low) if self.low == self.high else rng.uniform(self.low, self.high, n)

    def record(self):
        return self.low if self.low == self.high else [self.low, self.high]

    def __str__(self) -> str:
        return f"{self.low:g}" if self.low == self.high else f"{self.low:g}..{self.high:g}"


QUANTITIES = ("pool", "new", "lost", "cumulative_candidates")


def simulate_pool(new_fit: Fit, loss_fit: Fit, pool0: np.ndarray, exposure: np.ndarray, keep: int,
                  draws: int = DRAWS, seed: int = SEED, conversion: Conversion | None = None,
                  capacity: np.ndarray | None = None, pass_chance: float = 1.0,
                  reentry: float = 0.0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Simulate the pool of each site over the months of `exposure` (one column a month).

    Each draw takes a rate of new candidates and a loss hazard per site from their posteriors, then month
    by month: pool = pool - Binomial(pool, min(1, hazard x months)) + Poisson(rate x months) (the
    snapshot at each month-end, as the history counts it). Cumulative candidates: the pool at D plus
    the new candidates who were never candidates before (each new one is a returning candidate with
    chance `reentry`, the history's share). Screening (only with a conversion): the pool at D and each
    new candidate wait to be screened, losing candidates at the same hazard meanwhile; a site screens up
    to `capacity` a month (None: all at once, the pool at D at month 0); a screened patient enrols with
    chance pass_chance x conversion (the conversion drawn once per simulation).

    Returns (per site: quantity -> (draws, sites, keep) for the first `keep` months; totals:
    quantity -> (draws, months + 1), month 0 being D).
    """
    rng = np.random.default_rng(seed)
    n_sites, months = len(pool0), len(exposure)
    lam = new_fit.draw(rng, draws)
    haz = loss_fit.draw(rng, draws)
    conv = conversion.draw(rng, draws) if conversion is not None else None
    pool = np.broadcast_to(pool0.astype(np.int64), (draws, n_sites)).copy()
    site = {q: np.zeros((draws, n_sites, keep), dtype=np.int64) for q in QUANTITIES}
    tot = {q: np.zeros((draws, months + 1), dtype=np.int64) for q in QUANTITIES}
    tot["pool"][:, 0] = tot["cumulative_candidates"][:, 0] = int(pool0.sum())
    distinct = pool.copy()
    if conv is not None:
        for q in ("screened", "enrolled"):
            site[q] = np.zeros((draws, n_sites, keep), dtype=np.int64)
            tot[q] = np.zeros((draws, months + 1), dtype=np.int64)
        p = np.clip(conv * pass_chance, 0, 1)[:, None]
        waiting = pool.copy()
        cum_screened = np.zeros_like(pool)
        cum_enrolled = np.zeros_like(pool)
        if capacity is None:  # everyone in the pool at D is screened at once
            cum_screened = waiting.copy()
            cum_enrolled = rng.binomial(waiting, p)
            tot["screened"][:, 0] = cum_screened.sum(axis=1)
            tot["enrolled"][:, 0] = cum_enrolled.sum(axis=1)
            waiting[:] = 0
        cum_screened_tot, cum_enrolled_tot = tot["screened"][:, 0].copy(), tot["enrolled"][:, 0].copy()
    for t in range(months):
        q_loss = np.minimum(haz * exposure[t], 1.0)  # expected losses hazard x pool x months, as estimated
        lost = rng.binomial(pool, q_loss)
        new = rng.poisson(lam * exposure[t])
        pool = pool - lost + new
        distinct = distinct + (rng.binomial(new, 1.0 - reentry) if reentry > 0 else new)
        for q, v in (("pool", pool), ("new", new), ("lost", lost), ("cumulative_candidates", distinct)):
            tot[q][:, t + 1] = v.sum(axis=1)
            if t < keep:
                site[q][:, :, t] = v
        if conv is not None:
            waiting = waiting - rng.binomial(waiting, q_loss) + new
            screened = waiting if capacity is None else np.minimum(waiting, capacity[None, :])
            waiting = waiting - screened
            enrolled = rng.binomial(screened, p)
            cum_screened = cum_screened + screened
            cum_enrolled = cum_enrolled + enrolled
            cum_screened_tot = cum_screened_tot + screened.sum(axis=1)
            cum_enrolled_tot = cum_enrolled_tot + enrolled.sum(axis=1)
            tot["screened"][:, t + 1] = cum_screened_tot
            tot["enrolled"][:, t + 1] = cum_enrolled_tot
            if t < keep:
                site["screened"][:, :, t] = cum_screened
                site["enrolled"][:, :, t] = cum_enrolled
    return site, tot


def _pool_table(sites: list[str], ends: list[dt.date], site: dict[str, np.ndarray],
                tot: dict[str, np.ndarray]) -> pl.DataFrame:
    """projection_pool.csv: month, end_date, site_id, quantity, mean, median and the intervals, per site and TOTAL."""
    frames = []
    keep = len(ends)
    levels = {"median": 0.5, **LEVELS}
    for q in site:
        per = quantiles(site[q], levels)  # (sites, keep)
        mean = site[q].mean(axis=0)
        allq = quantiles(tot[q][:, 1:keep + 1], levels)
        allm = tot[q][:, 1:keep + 1].mean(axis=0)
        n = len(sites)
        frames.append(pl.DataFrame({
            "month": np.tile(np.arange(1, keep + 1), n + 1),
            "end_date": ends * (n + 1),
            "site_id": np.repeat(sites + [TOTAL], keep),
            "quantity": [q] * ((n + 1) * keep),
            "mean": np.round(np.concatenate([mean.ravel(), allm]), 3),
            **{k: np.concatenate([per[k].ravel(), allq[k]]).astype(np.int64) for k in levels},
        }))
    return pl.concat(frames).sort("quantity", "month", "site_id", maintain_order=True)


def _band(x: np.ndarray) -> list[dict]:
    """Per month (columns of x: month 0 = D, ...): median and the intervals, as plain numbers."""
    q = quantiles(x, {"median": 0.5, **LEVELS})
    return [{"month": j, **{k: int(v[j]) for k, v in q.items()}, "mean": round(float(x[:, j].mean()), 3)}
            for j in range(x.shape[1])]


@dataclass
class Projection:
    table: pl.DataFrame  # projection.csv
    backtest: pl.DataFrame | None  # projection_backtest.csv
    record: dict  # summary.json `projection`
    fan: list[dict]  # the report's pool fan: month 0 (D) .. months, net pool quantiles
    pool_table: pl.DataFrame | None = None  # projection_pool.csv
    pool_backtest: pl.DataFrame | None = None  # projection_backtest_pool.csv
    bands: dict | None = None  # quantity -> list of per-month quantiles (TOTAL), month 0 = D


def project(flow: Flow, as_of: dt.date, pool: int | np.ndarray | None = None, months: int = 12,
            target: int | None = None, conversion=None, target_source: str | None = None, seed: int = SEED,
            draws: int = DRAWS, screening_capacity: int | np.ndarray | None = None, screen_pass: float | None = None,
            eligible_chance: float | None = None, reentry: float = 0.0, planned_enrolment: int | None = None
            ) -> Projection:
    """The projection after D: new candidates per site (projection.csv), and the pool as a flow (new, lost,
    net pool, cumulative candidates; screened and enrolled with a conversion). `pool`: the candidates at D
    per site (default: the flow's last date; a single number is spread over the sites as the flow's).
    The target is this registry's share: without a target or without a conversion there is no time to
    target. `planned_enrolment` is recorded for context only."""
    conv = Conversion.parse(conversion)
    f = fit(flow)
    lf = fit_hazard(flow.lost.sum(axis=1), flow.candidate_months)
    pool0 = _pool_now(flow, pool)
    with_target = target is not None and conv is not None
    horizon = max(months, MAX_MONTHS_TO_TARGET) if with_target else months
    ends = [add_months(as_of, k) for k in range(0, horizon + 1)]
    exposure = np.array([(b - a).days / MONTH_DAYS for a, b in zip(ends[:-1], ends[1:])])
    lam, sim = simulate(f, exposure[:months], draws, seed)
    expected = (f.shape / f.rate)[:, None] * exposure[None, :months]
    table = _cells(flow.sites, ends[1:months + 1], expected, sim).with_columns(
        pl.col("end_date").rank("dense").cast(pl.Int64).alias("month")).select(
        "month", "end_date", "site_id", "expected_new_candidates", *LEVELS)
    totals = sim.sum(axis=1)  # (draws, months)
    capacity = None
    if isinstance(screening_capacity, dict):  # per site; a site not listed is unlimited
        capacity = np.array([screening_capacity.get(s, UNLIMITED) for s in flow.sites], dtype=np.int64)
    elif screening_capacity is not None:
        capacity = np.broadcast_to(np.asarray(screening_capacity, dtype=np.int64), (len(flow.sites),)).copy()
    pass_chance = (1.0 if screen_pass is None else screen_pass) * (1.0 if eligible_chance is None else eligible_chance)
    site, tot = simulate_pool(f, lf, pool0, exposure, months, draws, seed + 1, conv, capacity, pass_chance, reentry)
    bands = {q: _band(v[:, :months + 1]) for q, v in tot.items()}
    for q in bands:
        for j, b in enumerate(bands[q]):
            b["end_date"] = ends[j].isoformat()
    fan = bands["pool"]
    record = {
        "model": "Poisson-gamma arrivals (site rates gamma-distributed across sites, empirical Bayes by maximum "
                 "marginal likelihood) and a loss hazard per candidate-month (gamma across sites, empirical Bayes); "
                 "the pool simulated month by month",
        "fit": f.record(flow.sites),
        "loss_fit": _hazard_record(lf, flow.sites),
        "months": months, "draws": draws, "seed": seed,
        "pool": int(pool0.sum()),
        "expected_new_candidates": round(float(expected.sum()), 3),
        "new_candidates_80": [int(v) for v in quantiles(totals.sum(axis=1), {"lo": 0.1, "hi": 0.9}).values()],
        "expected_lost_candidates": round(float(tot["lost"][:, 1:months + 1].sum(axis=1).mean()), 3),
        "pool_at_end": {k: v for k, v in bands["pool"][-1].items() if k not in ("month",)},
        "cumulative_candidates_at_end": {k: v for k, v in bands["cumulative_candidates"][-1].items() if k != "month"},
        "reentry_share": round(float(reentry), 4),
        "target": target, "target_source": target_source if target is not None else None,
        "planned_enrolment": planned_enrolment,
        "conversion": None if conv is None else conv.record(),
        "screening_capacity": None if capacity is None else (
            int(capacity[0]) if len(set(capacity.tolist())) == 1 and not isinstance(screening_capacity, dict)
            else {s: (None if c >= UNLIMITED else int(c)) for s, c in zip(flow.sites, capacity.tolist())}),
        "screen_pass": screen_pass, "eligible_chance": None if eligible_chance is None else round(eligible_chance, 4),
        "time_to_target": None,
        "time_to_target_reason": None,
    }
    if conv is not None:
        record["enrolled_at_end"] = {k: v for k, v in bands["enrolled"][-1].items() if k != "month"}
    if target is None:
        record["time_to_target_reason"] = "no target: give --target N, this registry's share of the trial's enrolment"
    elif conv is None:
        record["time_to_target_reason"] = ("no conversion: give --conversion P (or a range 0.2..0.4); without it the "
                                           "forecast is in candidates, not enrolments")
    else:
        m = first_month(tot["enrolled"], target)
        s = np.sort(m)
        median, low, high = (float(s[quantile_index(q, len(s))]) for q in (0.5, 0.1, 0.9))
        record["time_to_target"] = {
            "months_median": _month(median), "months_low_80": _month(low),
            "months_high_80": _month(high), "max_months": horizon,
            "share_reached_within_max": round(float(np.isfinite(m).mean()), 4),
            "date_median": None if math.isinf(median) else ends[int(median)].isoformat(),
        }
    bt_table, bt_pool, bt_record = backtest(flow, as_of, seed, draws)
    record["backtest"] = bt_record
    covs = [bt_record.get("coverage_80")] + [v["coverage_80"] for v in bt_record.get("quantities", {}).values()]
    record["reliable"] = None if bt_record.get("coverage_80") is None else min(covs) >= RELIABLE_COVERAGE
    pool_table = _pool_table(flow.sites, ends[1:months + 1], site, tot)
    return Projection(table, bt_table, record, fan, pool_table, bt_pool, bands)


def _pool_now(flow: Flow, pool) -> np.ndarray:
    last = flow.pool[:, -1].astype(np.int64)
    if pool is None:
        return last
    if np.ndim(pool) == 1:
        return np.asarray(pool, dtype=np.int64)
    pool = int(pool)
    if pool == int(last.sum()):
        return last
    if not len(last):
        return last
    # spread a given total over the sites in proportion to the last date's pool (equally if none)
    w = last / last.sum() if last.sum() else np.full(len(last), 1 / len(last))
    out = np.floor(w * pool).astype(np.int64)
    out[np.argsort(-(w * pool - out))[: pool - int(out.sum())]] += 1
    return out


def _hazard_record(f: Fit, sites: list[str]) -> dict:
    return {
        "method": f.method,
        "alpha": None if f.alpha is None else _r(f.alpha), "beta": None if f.beta is None else _r(f.beta),
        "alpha_at_upper_bound": f.at_bound,
        "mean_hazard_per_candidate_month": _r(f.alpha / f.beta) if f.alpha else _r(f.shape[0] / f.rate[0])
        if len(f.shape) else None,
        "candidate_months": _r(f.months), "lost_candidates": f.new_candidates,
        "site_hazards_per_candidate_month": {s: _r(a / b) for s, a, b in zip(sites, f.shape, f.rate)},
    }


def backtest(flow: Flow, as_of: dt.date, seed: int = SEED, draws: int = DRAWS
             ) -> tuple[pl.DataFrame | None, pl.DataFrame | None, dict]:
    """Fit on the history up to D minus 12 months, project its full months after that, compare: new candidates
    (projection_backtest.csv, `coverage_80`), and new, lost and the net pool from the pool at the cut
    (projection_backtest_pool.csv, `quantities`)."""
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
        return None, None, rec
    if train.sum() < MIN_FIT_MONTHS or test.sum() == 0:
        rec["available"] = False
        rec["reason"] = (f"the back-test needs {MIN_FIT_MONTHS} months of history to fit before "
                         f"{cut.isoformat()} and a full month after it (--history {BACKTEST_MONTHS + MIN_FIT_MONTHS + 1} "
                         "or more)")
        return None, None, rec
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
    # The pool as a flow, from the pool of each site at the first tested month's start.
    lf = fit_hazard(fit_flow.lost.sum(axis=1), fit_flow.candidate_months)
    rec["loss_fit"] = _hazard_record(lf, flow.sites)
    k = len(test_flow.ends)
    site, tot = simulate_pool(f, lf, test_flow.pool[:, 0], exposure, k, draws, seed + 1)
    obs = {"new": test_flow.counts, "lost": test_flow.lost, "pool": test_flow.pool[:, 1:]}
    frames, quantities = [], {}
    for name, o in obs.items():
        sim_s = site[name]  # (draws, sites, k)
        sim_t = tot[name][:, 1:k + 1]  # (draws, k)
        qs, qt = quantiles(sim_s), quantiles(sim_t)
        ins80 = (o >= qs["low_80"]) & (o <= qs["high_80"])
        ins95 = (o >= qs["low_95"]) & (o <= qs["high_95"])
        ot = o.sum(axis=0)
        t80 = (ot >= qt["low_80"]) & (ot <= qt["high_80"])
        t95 = (ot >= qt["low_95"]) & (ot <= qt["high_95"])
        own = ((sim_s >= qs["low_80"][None]) & (sim_s <= qs["high_80"][None])).mean()
        quantities[name] = {"coverage_80": round(float(ins80.mean()), 4), "coverage_95": round(float(ins95.mean()), 4),
                            "total_coverage_80": round(float(t80.mean()), 4),
                            "total_coverage_95": round(float(t95.mean()), 4),
                            "model_coverage_80": round(float(own), 4),
                            "observed_last" if name == "pool" else "observed": int(ot[-1] if name == "pool" else ot.sum()),
                            "expected_last" if name == "pool" else "expected":
                                round(float(sim_t[:, -1].mean() if name == "pool" else sim_t.sum(axis=1).mean()), 3)}
        n = len(flow.sites)
        frames.append(pl.DataFrame({
            "end_date": [d for d in test_flow.ends for _ in range(n + 1)],
            "site_id": (flow.sites + [TOTAL]) * k,
            "quantity": [name] * ((n + 1) * k),
            "observed": np.vstack([o, ot[None, :]]).T.ravel().astype(np.int64),
            "mean": np.round(np.vstack([sim_s.mean(axis=0), sim_t.mean(axis=0)[None, :]]).T.ravel(), 3),
            **{lv: np.vstack([qs[lv], qt[lv][None, :]]).T.ravel().astype(np.int64) for lv in LEVELS},
            "inside_80": np.vstack([ins80, t80[None, :]]).T.ravel(),
            "inside_95": np.vstack([ins95, t95[None, :]]).T.ravel(),
        }))
    rec["quantities"] = quantities
    return table, pl.concat(frames), rec
