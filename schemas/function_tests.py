"""function_tests.csv: cardiac (LVEF, %) and pulmonary (FEV1, DLCO, % of predicted) tests."""

import pandera.polars as pa
import polars as pl

from schemas import rules as r
from schemas.codes import FUNCTION_TESTS as TESTS


def schema(ctx: r.Context) -> pa.DataFrameSchema:
    def in_range(c):
        v, test = r.parse_float(pl.col(c), ctx.dialect), r.upper(pl.col("test"))
        return (v.is_null() | ~test.is_in(TESTS)
                | pl.when(test == "LVEF").then(v.is_between(0.0, 100.0)).otherwise(v.is_between(0.0, 250.0)))
    return pa.DataFrameSchema({
        "patient_id": r.column(nullable=False),
        "test_date": r.column([r.is_date(ctx)], nullable=False),
        "test": r.column([r.one_of(TESTS)], nullable=False),
        "value": r.column([r.is_number(ctx), r.row_check(
            in_range, "{column} '{value}' is outside the test's range (LVEF 0 .. 100; FEV1, DLCO 0 .. 250)")],
            nullable=False),
    }, name="function_tests")


def typed(ctx: r.Context) -> list[pl.Expr]:
    d = ctx.dialect
    return [
        pl.col("patient_id"), r.parse_date(pl.col("test_date"), d).alias("test_date"),
        r.upper(pl.col("test")).alias("test"), r.parse_float(pl.col("value"), d).alias("value"),
    ]
