"""visits.csv: clinical assessments (EDSS, Karnofsky, weight), many per patient."""

import pandera.polars as pa
import polars as pl

from schemas import rules as r


def schema(ctx: r.Context) -> pa.DataFrameSchema:
    return pa.DataFrameSchema({
        "patient_id": r.column(nullable=False),
        "visit_date": r.column([r.is_date(ctx)], nullable=False),
        "edss": r.column([r.is_number(ctx), r.number_rule(
            ctx, lambda v: v.is_between(0.0, 10.0) & ((v * 2) == (v * 2).floor()),
            "is not an EDSS score (0.0 .. 10.0 in steps of 0.5)")]),
        "karnofsky": r.column([r.is_whole(ctx), r.number_rule(
            ctx, lambda v: v.is_between(0, 100) & ((v % 10) == 0),
            "is not a Karnofsky index (0 .. 100 in steps of 10)")]),
        "weight_kg": r.column([r.is_number(ctx), r.number_rule(
            ctx, lambda v: v.is_between(20.0, 350.0), "is outside 20 .. 350 kg")]),
    }, name="visits")


def typed(ctx: r.Context) -> list[pl.Expr]:
    d = ctx.dialect
    return [
        pl.col("patient_id"), r.parse_date(pl.col("visit_date"), d).alias("visit_date"),
        r.parse_float(pl.col("edss"), d).alias("edss"),
        r.parse_int(pl.col("karnofsky"), d).alias("karnofsky"),
        r.parse_float(pl.col("weight_kg"), d).alias("weight_kg"),
    ]
