"""The result tables of a run (attrition, candidates, counts), derived from the evaluation matrix the same way for both engines.

attrition.csv follows the trial order: `remaining` after step k is the number of
patients with no `fail` in criteria 1..k; `gain` is the number whose *only* fail is
this criterion (the candidates gained if it were dropped).
"""

from __future__ import annotations

import polars as pl

from pipeline.criteria import Trial

STATUSES = ("eligible", "possible", "ineligible")


def attrition(evaluation: pl.DataFrame, trial: Trial) -> pl.DataFrame:
    ids = trial.ids
    fails = evaluation.select([(pl.col(c) == "fail").cast(pl.Int64).alias(c) for c in ids])
    n_fails = fails.sum_horizontal() if ids else pl.zeros(evaluation.height, pl.Int64, eager=True)
    rows, remaining_prev = [], evaluation.height
    cum_fail = pl.repeat(False, evaluation.height, dtype=pl.Boolean, eager=True)
    for step, c in enumerate(ids, start=1):
        col = evaluation[c]
        cum_fail = cum_fail | (col == "fail")
        remaining = int((~cum_fail).sum())
        rows.append({
            "step": step, "criterion": c,
            "n_pass": int((col == "pass").sum()), "n_fail": int((col == "fail").sum()),
            "n_unknown": int((col == "unknown").sum()), "n_screening": int((col == "screening").sum()),
            "remaining": remaining, "excluded": remaining_prev - remaining,
            "gain": int(((fails[c] == 1) & (n_fails == 1)).sum()),
        })
        remaining_prev = remaining
    schema = {k: pl.Int64 for k in ("step", "n_pass", "n_fail", "n_unknown", "n_screening",
                                    "remaining", "excluded", "gain")} | {"criterion": pl.Utf8}
    return pl.DataFrame(rows, schema=schema).select(
        "step", "criterion", "n_pass", "n_fail", "n_unknown", "n_screening", "remaining", "excluded", "gain")


def criteria_with(ids: list[str], value: str) -> pl.Expr:
    """The criterion ids (of `ids`) whose column holds `value`, joined by `;` (empty when none)."""
    return pl.concat_str([pl.when(pl.col(c) == value).then(pl.lit(c)) for c in ids], separator=";", ignore_nulls=True)


def candidates(evaluation: pl.DataFrame, trial: Trial) -> pl.DataFrame:
    """Eligible and possible patients, with the unknown criteria listed and the evidence."""
    ids = trial.ids
    unknown = criteria_with(ids, "unknown")
    evidence = [c for c in evaluation.columns if "__" in c]
    return (evaluation.filter(pl.col("status").is_in(["eligible", "possible"]))
            .with_columns(unknown.alias("unknown_criteria"))
            .select("patient_id", "site_id", "status", "unknown_criteria", *ids, *evidence))


def counts(evaluation: pl.DataFrame) -> dict[str, int]:
    got = dict(evaluation.group_by("status").len().iter_rows())
    return {"population": evaluation.height, **{s: int(got.get(s, 0)) for s in STATUSES}}


def by_site(evaluation: pl.DataFrame) -> dict[str, dict[str, int]]:
    wide = (evaluation.group_by("site_id").agg(*[(pl.col("status") == s).sum().alias(s) for s in STATUSES])
            .sort("site_id"))
    return {row["site_id"]: {s: int(row[s]) for s in STATUSES} for row in wide.iter_rows(named=True)}
