"""conditions.csv: comorbidities, malignancies and infections."""

import pandera.polars as pa
import polars as pl

from schemas import rules as r
from schemas.codes import CATEGORIES, INFECTION_TYPES, SEVERITIES, YES_NO


def schema(ctx: r.Context) -> pa.DataFrameSchema:
    return pa.DataFrameSchema({
        "patient_id": r.column(nullable=False),
        "code": r.column(),
        "category": r.column([r.one_of(CATEGORIES, r.lower)], nullable=False),
        "onset_date": r.column([r.is_date(ctx)]),
        "end_date": r.column([r.is_date(ctx), r.not_before(ctx, "onset_date")]),
        "severity": r.column([r.one_of(SEVERITIES, r.lower)]),
        "infection_type": r.column([r.one_of(INFECTION_TYPES, r.lower)]),
        "controlled": r.column([r.one_of(YES_NO)]),
        "impairs_consent": r.column([r.one_of(YES_NO)]),
    }, name="conditions")


def typed(ctx: r.Context) -> list[pl.Expr]:
    d = ctx.dialect
    return [
        pl.col("patient_id"), r.upper(pl.col("code")).alias("code"), r.lower(pl.col("category")).alias("category"),
        r.parse_date(pl.col("onset_date"), d).alias("onset_date"),
        r.parse_date(pl.col("end_date"), d).alias("end_date"),
        r.lower(pl.col("severity")).alias("severity"),
        r.lower(pl.col("infection_type")).alias("infection_type"),
        r.upper(pl.col("controlled")).alias("controlled"),
        r.upper(pl.col("impairs_consent")).alias("impairs_consent"),
    ]
