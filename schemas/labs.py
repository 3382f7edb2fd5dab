"""labs.csv: laboratory results in long format; the criteria read AST, ALT, TBIL, CREAT."""

import pandera.polars as pa
import polars as pl

from schemas import rules as r
from schemas.codes import LAB_UNITS as UNITS

# One lookup of "TEST|unit" instead of a branch per test: a single pass over millions of labs.
_CANONICAL = {f"{t}|{k}": v for t, units in UNITS.items() for k, v in units.items()}


def _test_unit(c: str) -> pl.Expr:
    return pl.concat_str([r.upper(pl.col("test")), r.lower(pl.col(c))], separator="|")


def _unit_ok(c: str) -> pl.Expr:
    return ~r.upper(pl.col("test")).is_in(list(UNITS)) | _test_unit(c).is_in(list(_CANONICAL))


def _unit_present(c: str) -> pl.Expr:
    return ~r.upper(pl.col("test")).is_in(list(UNITS)) | pl.col(c).is_not_null()


def schema(ctx: r.Context) -> pa.DataFrameSchema:
    return pa.DataFrameSchema({
        "patient_id": r.column(nullable=False),
        "sample_date": r.column([r.is_date(ctx)], nullable=False),
        "test": r.column(nullable=False),
        "value": r.column([r.is_number(ctx), r.number_rule(ctx, lambda v: v >= 0, "is negative"),
                           r.row_check(lambda c: (r.upper(pl.col("test")) != "CREAT")
                                       | (r.parse_float(pl.col(c), ctx.dialect) != 0),
                                       "{column} '{value}' must be above 0 for CREAT")], nullable=False),
        # The column must be present; a unit is required for the four tests the criteria read.
        "unit": r.column([r.row_check(_unit_ok, "{column} '{value}' is not a unit of this test "
                                      "(AST/ALT: U/L, IU/L; TBIL/CREAT: umol/L, µmol/L, mg/dL)")]),
        "ref_high": r.column([r.is_number(ctx), r.number_rule(ctx, lambda v: v > 0, "is not above 0")]),
    }, checks=[r.expr_check(lambda _: _unit_present("unit"), "unit is empty but required for AST, ALT, TBIL and CREAT",
                            "unit required", column="unit")],
       name="labs")


def typed(ctx: r.Context) -> list[pl.Expr]:
    d = ctx.dialect
    test = r.upper(pl.col("test"))
    unit = (pl.when(test.is_in(list(UNITS)))
            .then(_test_unit("unit").replace_strict(_CANONICAL, default=None, return_dtype=pl.Utf8))
            .otherwise(pl.col("unit")))
    return [
        pl.col("patient_id"), r.parse_date(pl.col("sample_date"), d).alias("sample_date"),
        test.alias("test"), r.parse_float(pl.col("value"), d).alias("value"), unit.alias("unit"),
        r.parse_float(pl.col("ref_high"), d).alias("ref_high"),
    ]
