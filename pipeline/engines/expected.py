"""The expected eligible: how many `possible` patients would pass the criteria still unknown for them.

For each criterion, the pass rate among the trial's population where the criterion is known
(`pass` or `fail`; `unknown` and `screening` do not count): r_c = pass / (pass + fail). A
possible patient whose criteria U are unknown passes them all with chance prod_{c in U} r_c.
This assumes the criteria are **missing at random** (a patient without the data would pass
as often as one with it, in the same trial population) and **independent** of one another
given that they are known or not. The expected eligible is

    E = eligible + sum over possible patients of prod_{c in U(patient)} r_c.

Its 80 % interval is that of the number of patients who would turn out eligible, over
`DRAWS` simulations: each draws every r_c from its posterior Beta(pass + 1/2, fail + 1/2)
(Jeffreys), then for each group of possible patients with the same site and the same
unknown criteria, a binomial count with the group's chance. So the interval allows for both
the uncertainty of the rates and the luck of which patients pass. Everything is vectorised:
the patients are grouped by Polars (one row per site and pattern of unknown criteria), never
looped over in Python.
"""

from __future__ import annotations

import numpy as np
import polars as pl

SEED = 20261207
DRAWS = 4000
ASSUMPTIONS = ("missing at random: a patient whose data are missing passes a criterion as often as the patients of "
               "the same trial population for whom it is known; independence: the unknown criteria pass "
               "independently of one another")


def criterion_rates(evaluation: pl.DataFrame, ids: list[str]) -> dict[str, dict]:
    """Per criterion: patients where it is known, those passing, and the pass rate (None when never known)."""
    if not ids:
        return {}
    row = evaluation.select(*[pl.struct((pl.col(c) == "pass").sum().alias("p"),
                                        (pl.col(c) == "fail").sum().alias("f")).alias(c) for c in ids]).row(0)
    out = {}
    for c, v in zip(ids, row):
        known = int(v["p"]) + int(v["f"])
        out[c] = {"known": known, "pass": int(v["p"]), "rate": round(v["p"] / known, 4) if known else None}
    return out


def _counts(rates: dict[str, dict], ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p_pass = np.array([rates[c]["pass"] for c in ids], dtype=float)
    p_fail = np.array([rates[c]["known"] - rates[c]["pass"] for c in ids], dtype=float)
    point = np.where(p_pass + p_fail > 0, p_pass / np.maximum(p_pass + p_fail, 1), 0.5)  # never known: even odds
    return p_pass, p_fail, point


def _q(x: np.ndarray, q: float) -> int:
    return int(np.quantile(x, q, method="inverted_cdf"))


def estimate(evaluation: pl.DataFrame, ids: list[str], draws: int = DRAWS, seed: int = SEED) -> dict:
    """summary.json `expected_eligible`: total and per site, each with its 80 % interval, and the rates used."""
    rates = criterion_rates(evaluation, ids)
    sites = sorted(set(evaluation["site_id"].to_list())) if evaluation.height else []
    eligible = (evaluation.group_by("site_id").agg((pl.col("status") == "eligible").sum().alias("n"))
                if evaluation.height else pl.DataFrame({"site_id": [], "n": []}))
    n_eligible = dict(eligible.iter_rows())
    possible = evaluation.filter(pl.col("status") == "possible")
    unknown_ids = [c for c in ids]
    if possible.height and unknown_ids:
        groups = (possible.select("site_id", *[(pl.col(c) == "unknown").alias(c) for c in unknown_ids])
                  .group_by("site_id", *unknown_ids).agg(pl.len().alias("n")).sort("site_id", *unknown_ids))
    else:
        groups = pl.DataFrame({"site_id": [], "n": []}, schema={"site_id": pl.Utf8, "n": pl.UInt32})
    mask = groups.select(unknown_ids).to_numpy().astype(bool) if groups.height else np.zeros((0, len(ids)), bool)
    n = groups["n"].to_numpy().astype(np.int64)
    p_pass, p_fail, point = _counts(rates, ids)
    chance = np.exp(mask.astype(float) @ np.log(np.maximum(point, 1e-300))) if len(n) else np.zeros(0)
    rng = np.random.default_rng(seed)
    r = rng.beta(p_pass[None, :] + 0.5, p_fail[None, :] + 0.5, size=(draws, len(ids)))
    chance_d = np.exp(np.log(np.maximum(r, 1e-300)) @ mask.T.astype(float))  # (draws, groups)
    realised = rng.binomial(n[None, :], chance_d) if len(n) else np.zeros((draws, 0), np.int64)
    site_of = groups["site_id"].to_list()

    def block(expected: float, draws_: np.ndarray, base: int) -> dict:
        total = base + draws_
        return {"expected": round(float(expected), 2), "low_80": _q(total, 0.1), "high_80": _q(total, 0.9)}

    by_site = {}
    for s in sites:
        cols = np.array([g == s for g in site_of], dtype=bool)
        base = int(n_eligible.get(s, 0))
        by_site[s] = block(base + float((n * chance)[cols].sum()), realised[:, cols].sum(axis=1), base)
    base = int(sum(n_eligible.values()))
    total = block(base + float((n * chance).sum()), realised.sum(axis=1), base)
    return {**total, "eligible": base, "possible": int(possible.height),
            "by_site": by_site, "criteria": rates, "draws": draws, "seed": seed, "assumptions": ASSUMPTIONS,
            "method": "per criterion, the pass rate where it is known; a possible patient's chance is the product "
                      "over its unknown criteria; interval from Beta(pass + 1/2, fail + 1/2) rates and binomial "
                      "counts per site and pattern of unknown criteria"}


def learnt_later(before: pl.DataFrame, after: pl.DataFrame, ids: list[str], draws: int = DRAWS,
                 seed: int = SEED) -> dict:
    """The expected eligible's back-test: the patients possible at `before` whose unknown criteria were all known
    (pass or fail) at `after` (both evaluations hold the same patients in the same order). Predicted: the sum of
    their chances with the rates of `before`, and its 80 % interval; observed: those whose criteria unknown at
    `before` all pass at `after`."""
    rates = criterion_rates(before, ids)
    if not ids or before.height == 0:
        return {"patients": 0, "observed": 0, "expected": 0.0, "low_80": 0, "high_80": 0, "inside_80": True}
    unknown = before.select([(pl.col(c) == "unknown").alias(c) for c in ids]).to_numpy().astype(bool)
    known_after = after.select([pl.col(c).is_in(["pass", "fail"]).alias(c) for c in ids]).to_numpy().astype(bool)
    passes_after = after.select([(pl.col(c) == "pass").alias(c) for c in ids]).to_numpy().astype(bool)
    possible = (before["status"] == "possible").to_numpy()
    resolved = possible & (~unknown | known_after).all(axis=1)
    observed = int((resolved & (~unknown | passes_after).all(axis=1)).sum())
    mask = unknown[resolved]
    if mask.shape[0] == 0:
        return {"patients": 0, "observed": 0, "expected": 0.0, "low_80": 0, "high_80": 0, "inside_80": True}
    patterns, n = np.unique(mask, axis=0, return_counts=True)
    p_pass, p_fail, point = _counts(rates, ids)
    chance = np.exp(patterns.astype(float) @ np.log(np.maximum(point, 1e-300)))
    rng = np.random.default_rng(seed)
    r = rng.beta(p_pass[None, :] + 0.5, p_fail[None, :] + 0.5, size=(draws, len(ids)))
    total = rng.binomial(n[None, :], np.exp(np.log(np.maximum(r, 1e-300)) @ patterns.T.astype(float))).sum(axis=1)
    low, high = _q(total, 0.1), _q(total, 0.9)
    return {"patients": int(resolved.sum()), "observed": observed, "expected": round(float((n * chance).sum()), 2),
            "low_80": low, "high_80": high, "inside_80": bool(low <= observed <= high)}
