"""relapses.csv: relapse onsets (used to set aside EDSS measured during a relapse)."""

import pandera.polars as pa
import polars as pl

from schemas import rules as r


def schema(ctx: r.Context) -> pa.DataFrameSchema:
    return pa.DataFrameSchema({
        "patient_id": r.column(nullable=False),
        "onset_date": r.column([r.is_date(ctx)], nullable=False),
    }, name="relapses")


def typed(ctx: r.Context) -> list[pl.Expr]:
    return [pl.col("patient_id"), r.parse_date(pl.col("onset_date"), ctx.dialect).alias("onset_date")]
