"""Polars building blocks shared by the node compilers (`to_polars`) and the Polars blocks.

Every compiled node is a LazyFrame with one row per patient, in the order of the
patients table: `patient_id, status, <evidence...>`. Keeping that order everywhere
lets composites and the engine place results side by side instead of joining them.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.criteria.nodes import FAIL, PASS, SCREENING, UNKNOWN

PID = "patient_id"
Tables = dict[str, pl.LazyFrame]

__all__ = ["PID", "PASS", "FAIL", "UNKNOWN", "SCREENING", "Tables", "lit", "divide", "days_before", "latest",
           "age_years", "patients", "on_patients"]


def lit(value: str) -> pl.Expr:
    return pl.lit(value, pl.Utf8)


def divide(num: pl.Expr, denom: pl.Expr | float) -> pl.Expr:
    """num / denom as a true IEEE division, as SQL engines compute it.

    Polars turns a division by a scalar (a literal, and in some plans even a
    broadcast `repeat` of one) into a multiplication by its reciprocal, which can
    differ from the division in the last bit: 30 / 88.4 is 0.33936651583710403, but
    30 * (1 / 88.4) is 0.3393665158371041. Dividing by a real column with the value
    on every row keeps the true division in every plan (eager, lazy, after a
    filter, inside when/then); `num * 0.0 + denom` is that column (num is finite
    here: validated numbers and day counts).
    """
    d = denom if isinstance(denom, pl.Expr) else pl.lit(float(denom), pl.Float64)
    return num / (num * 0.0 + d)


def days_before(D: dt.date, n: int) -> dt.date:
    return D - dt.timedelta(days=n)


def latest(frame: pl.LazyFrame, date_col: str, value: str, D: dt.date, days: int, worst: str,
           name: str) -> pl.LazyFrame:
    """Per patient, the latest non-empty `value` dated in [D - days, D]; a same-day tie gives the worst.

    `worst` is "max" or "min". Returns `patient_id, <name>, <name>_date`.
    """
    f = frame.filter(pl.col(value).is_not_null() & pl.col(date_col).is_between(days_before(D, days), D))
    f = f.filter(pl.col(date_col) == pl.col(date_col).max().over(PID))
    agg = pl.col(value).max() if worst == "max" else pl.col(value).min()
    return f.group_by(PID).agg(agg.alias(name), pl.col(date_col).first().alias(f"{name}_date"))


def age_years(birth: pl.Expr, D: dt.date) -> pl.Expr:
    """Completed years at D: D.year - birth.year - ((D.month, D.day) < (birth.month, birth.day))."""
    before_birthday = (pl.lit(D.month) < birth.dt.month()) | (
        (pl.lit(D.month) == birth.dt.month()) & (pl.lit(D.day) < birth.dt.day()))
    return (pl.lit(D.year, pl.Int64) - birth.dt.year().cast(pl.Int64) - before_birthday.cast(pl.Int64))


def patients(t: Tables) -> pl.LazyFrame:
    return t["patients"].select(PID)


def on_patients(base: pl.LazyFrame, *per_patient: pl.LazyFrame) -> pl.LazyFrame:
    """`base` (one row per patient, in the patients' order) with per-patient frames left-joined.

    The order is kept on purpose: composites and `engines.evaluate` place results side
    by side instead of joining them again.
    """
    for frame in per_patient:
        base = base.join(frame, on=PID, how="left", maintain_order="left")
    return base
