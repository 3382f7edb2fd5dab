"""labs.csv: laboratory results in long format; the criteria read AST, ALT, TBIL, CREAT."""

import polars as pl
import pandera.polars as pa

from schemas import rules as r

# Accepted units of the four tests the criteria read, folded to lower case -> canonical.
UNITS = {
    "AST": {"u/l": "U/L", "iu/l": "U/L"},
    "ALT": {"u/l": "U/L", "iu/l": "U/L"},
    "TBIL": {"umol/l": "umol/L", "µmol/l": "umol/L", "μmol/l": "umol/L", "mg/dl": "mg/dL"},
    "CREAT": {"umol/l": "umol/L", "µmol/l": "umol/L", "μmol/l": "umol/L", "mg/dl": "mg/dL"},
}
_UNIT_KEYS = {t: list(u) for t, u in UNITS.items()}


def _unit_ok(c: str) -> pl.Expr:
    test, unit = r.upper(pl.col("test")), r.lower(pl.col(c))
    ok = pl.lit(True)
    for t, keys in _UNIT_KEYS.items():
        ok = pl.when(test == t).then(unit.is_in(keys)).otherwise(ok)
    return ok


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
    }, checks=[pa.Check(lambda data: data.lazyframe.select(_unit_present("unit").alias("unit")),
                        error="unit is empty but required for AST, ALT, TBIL and CREAT",
                        name="unit required")],
       name="labs")


def typed(ctx: r.Context) -> list[pl.Expr]:
    d = ctx.dialect
    test = r.upper(pl.col("test"))
    unit = pl.col("unit")
    for t, mapping in UNITS.items():
        unit = pl.when(test == t).then(r.lower(pl.col("unit")).replace_strict(mapping, default=None)).otherwise(unit)
    return [
        pl.col("patient_id"), r.parse_date(pl.col("sample_date"), d).alias("sample_date"),
        test.alias("test"), r.parse_float(pl.col("value"), d).alias("value"), unit.alias("unit"),
        r.parse_float(pl.col("ref_high"), d).alias("ref_high"),
    ]
