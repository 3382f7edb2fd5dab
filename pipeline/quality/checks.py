"""The expectations of the quality suites, computed as aggregates in Polars or in Spark SQL.

The suites stay great-expectations suites (`pipeline/quality/expectations/*.json`, GE's format), and
GE stays the reference that defines what each expectation means: `--quality ge` runs them
with GE itself, and `tests/test_quality_checks.py` holds the two to the same results on
planted cases and random frames. What this module adds is speed. GE's import alone takes
2.5 s (pandas, scipy, altair, its expectation registry) and it wants pandas frames, which
at a million patients costs seconds and gigabytes; a whole suite here is one aggregate
query over its frame, at the cost of a scan, on every engine, out of core where the
engine is.

One compiler per expectation type, each giving the same few counts GE's own validation
computes from its metrics (what `_validate` of GE 1.x reads):

- `n`: the frame's rows (GE's `table.row_count`);
- `considered`: the rows the expectation judges (GE's non-null count of a column map, the
  rows left after `ignore_row_if` of a column pair);
- `unexpected`: the considered rows that break it;
- `observed`: an aggregate expectation's statistic (the mean).

`judge` then applies GE's rules to those counts: vacuously true on no rows, `mostly`
as GE's `success_ratio >= mostly`, a statistic that is missing fails.

NaN counts as missing, because GE sees pandas, where NaN is null (a weight change of 0 kg
against 0 kg would be 0/0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

# GE's defaults of the kwargs the compilers read.
DEFAULT_IGNORE = "both_values_are_missing"
SUPPORTED = (
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_pair_values_a_to_be_greater_than_b",
    "expect_column_mean_to_be_between",
)


class UnsupportedExpectation(ValueError):
    """A suite names an expectation type this module does not compute (use `--quality ge`)."""


@dataclass(frozen=True)
class Result:
    """One expectation's outcome: GE's success and the figures a finding reports."""

    success: bool
    element_count: int
    considered: int | None  # None for an aggregate expectation
    unexpected: int | None
    observed: Any = None

    def as_dict(self, exp: dict) -> dict:
        """The raw result written to `quality/<suite>.json` (GE's names for the same figures)."""
        result: dict[str, Any] = {"element_count": self.element_count}
        if self.unexpected is not None:
            result["rows_considered"] = self.considered
            result["unexpected_count"] = self.unexpected
            result["unexpected_percent"] = (100.0 * self.unexpected / self.considered) if self.considered else None
        else:
            result["observed_value"] = observed_figure(self.observed)
        return {"expectation_config": {"type": exp["type"], "kwargs": exp.get("kwargs", {}), "meta": exp.get("meta", {})},
                "success": self.success, "result": result}


def observed_figure(value):
    """An observed statistic as reported: floats to 10 significant digits.

    A mean summed in another order (pandas or Polars here, Spark's partial sums there)
    differs in the last bits; ten digits are far more than a finding needs and the same on
    every engine.
    """
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return float(f"{float(value):.10g}")
    return value


# ---------------------------------------------------------------- Polars


def _polars_value(column: str, dtype: pl.DataType) -> pl.Expr:
    """A column with NaN read as missing (pandas' reading, and so GE's)."""
    col = pl.col(column)
    return col.fill_nan(None) if dtype.is_float() else col


def _check_range(kw: dict) -> None:
    """GE's own check of a range's configuration: an end at least, and not upside down."""
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if lo is None and hi is None:
        raise UnsupportedExpectation("a range needs min_value or max_value")
    if lo is not None and hi is not None and lo > hi:
        raise UnsupportedExpectation(f"min_value {lo} is above max_value {hi}")


def _every_row(v: pl.Expr) -> pl.Expr:
    """True on every row, as a column (a literal would be summed once, not once per row)."""
    return v.is_null() | v.is_not_null()


def _polars_between(v: pl.Expr, kw: dict) -> pl.Expr:
    """True where `v` breaks [min_value, max_value] (each end optional, strict or not)."""
    _check_range(kw)
    out = pl.lit(False)
    if kw.get("min_value") is not None:
        out = out | ((v <= kw["min_value"]) if kw.get("strict_min") else (v < kw["min_value"]))
    if kw.get("max_value") is not None:
        out = out | ((v >= kw["max_value"]) if kw.get("strict_max") else (v > kw["max_value"]))
    return out


def _polars_pair_kept(a: pl.Expr, b: pl.Expr, ignore: str) -> pl.Expr:
    if ignore == "either_value_is_missing":
        return a.is_not_null() & b.is_not_null()
    if ignore == "both_values_are_missing":
        return a.is_not_null() | b.is_not_null()
    if ignore == "neither":
        return _every_row(a)
    raise UnsupportedExpectation(f"ignore_row_if={ignore!r}")


def polars_rows(exp: dict, schema: pl.Schema) -> tuple[pl.Expr, pl.Expr]:
    """A map expectation row by row: (considered, unexpected), two booleans never null.

    A comparison with a missing value is decided here (not passed on as null), as GE
    decides it for pandas: a row is considered or not by GE's rule for its type, and a
    considered row whose comparison cannot be made breaks the expectation.
    """
    kind, kw = exp["type"], exp.get("kwargs", {})
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a = _polars_value(kw["column_A"], schema[kw["column_A"]])
        b = _polars_value(kw["column_B"], schema[kw["column_B"]])
        kept = _polars_pair_kept(a, b, kw.get("ignore_row_if", DEFAULT_IGNORE))
        holds = ((a >= b) if kw.get("or_equal") else (a > b)).fill_null(False)
        return kept, kept & ~holds
    if kind not in SUPPORTED or kind == "expect_column_mean_to_be_between":
        raise UnsupportedExpectation(kind)
    v = _polars_value(kw["column"], schema[kw["column"]])
    if kind == "expect_column_values_to_not_be_null":
        return _every_row(v), v.is_null()
    if kind == "expect_column_values_to_be_null":
        return _every_row(v), v.is_not_null()
    if kind == "expect_column_values_to_be_between":
        bad = _polars_between(v, kw)
    else:  # expect_column_values_to_be_in_set
        bad = ~v.is_in(pl.Series(list(kw["value_set"]), dtype=schema[kw["column"]]).implode())
    return v.is_not_null(), v.is_not_null() & bad.fill_null(False)


def polars_aggregates(exp: dict, schema: pl.Schema, prefix: str) -> list[pl.Expr]:
    """The aggregates of one expectation over its frame, named `<prefix>considered` and so on."""
    if exp["type"] == "expect_column_mean_to_be_between":
        _check_range(exp["kwargs"])
        column = exp["kwargs"]["column"]
        return [_polars_value(column, schema[column]).mean().cast(pl.Float64).alias(prefix + "observed")]
    considered, unexpected = polars_rows(exp, schema)
    return [considered.sum().alias(prefix + "considered"), unexpected.sum().alias(prefix + "unexpected")]


def polars_query(frame: pl.DataFrame | pl.LazyFrame, expectations: list[dict]) -> pl.LazyFrame:
    """Every expectation of a suite on one Polars frame, as one aggregate query (one row)."""
    lazy = frame.lazy()
    schema = lazy.collect_schema()
    aggs = [pl.len().alias("n")]
    for i, exp in enumerate(expectations):
        aggs += polars_aggregates(exp, schema, f"e{i}_")
    return lazy.select(aggs)


def polars_results(row: pl.DataFrame, expectations: list[dict]) -> list[Result]:
    """GE's verdicts from the one-row result of `polars_query`."""
    values = row.row(0, named=True)
    return [judge(exp, _figures(values, i)) for i, exp in enumerate(expectations)]


def run_polars(frame: pl.DataFrame | pl.LazyFrame, expectations: list[dict]) -> list[Result]:
    """Every expectation of a suite on one Polars frame."""
    return polars_results(polars_query(frame, expectations).collect(), expectations)


def _figures(row: dict, i: int) -> dict:
    p = f"e{i}_"
    return {"n": int(row["n"]), **{k[len(p):]: v for k, v in row.items() if k.startswith(p)}}


# ---------------------------------------------------------------- Spark SQL


def sql_aggregates(exp: dict, dtypes: dict[str, str], prefix: str) -> list:
    """The same aggregates as `polars_aggregates`, as sqlglot expressions (rendered per dialect)."""
    from sqlglot import exp as E

    def value(column: str):
        col = E.column(column, quoted=True)
        if dtypes[column] in ("double", "float"):
            return E.If(this=E.Anonymous(this="isnan", expressions=[col.copy()]), true=E.null(), false=col)
        return col

    def count_if(cond) -> E.Expression:
        return E.Coalesce(this=E.Sum(this=E.If(this=cond, true=E.Literal.number(1), false=E.Literal.number(0))),
                          expressions=[E.Literal.number(0)])

    def not_null(v):
        return E.Not(this=E.Is(this=v.copy(), expression=E.null()))

    def is_null(v):
        return E.Is(this=v.copy(), expression=E.null())

    def named(e, name):
        return E.alias_(e, prefix + name, quoted=True)

    kind, kw = exp["type"], exp.get("kwargs", {})
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = value(kw["column_A"]), value(kw["column_B"])
        ignore = kw.get("ignore_row_if", DEFAULT_IGNORE)
        if ignore == "either_value_is_missing":
            kept = E.and_(not_null(a), not_null(b))
        elif ignore == "both_values_are_missing":
            kept = E.or_(not_null(a), not_null(b))
        elif ignore == "neither":
            kept = E.true()
        else:
            raise UnsupportedExpectation(f"ignore_row_if={ignore!r}")
        cmp = (E.GTE if kw.get("or_equal") else E.GT)(this=a.copy(), expression=b.copy())
        holds = E.Coalesce(this=cmp, expressions=[E.false()])
        return [named(count_if(kept), "considered"),
                named(count_if(E.and_(kept.copy(), E.Not(this=E.paren(holds)))), "unexpected")]
    if kind not in SUPPORTED:
        raise UnsupportedExpectation(kind)
    v = value(kw["column"])
    if kind in ("expect_column_mean_to_be_between", "expect_column_values_to_be_between"):
        _check_range(kw)
    if kind == "expect_column_mean_to_be_between":
        return [named(E.Cast(this=E.Avg(this=v), to=E.DataType.build("double")), "observed")]
    if kind == "expect_column_values_to_not_be_null":
        return [named(E.Count(this=E.Star()), "considered"), named(count_if(is_null(v)), "unexpected")]
    if kind == "expect_column_values_to_be_null":
        return [named(E.Count(this=E.Star()), "considered"), named(count_if(not_null(v)), "unexpected")]
    if kind == "expect_column_values_to_be_between":
        parts = []
        if kw.get("min_value") is not None:
            parts.append((E.LTE if kw.get("strict_min") else E.LT)(this=v.copy(), expression=_literal(kw["min_value"])))
        if kw.get("max_value") is not None:
            parts.append((E.GTE if kw.get("strict_max") else E.GT)(this=v.copy(), expression=_literal(kw["max_value"])))
        bad = E.or_(*parts) if parts else E.false()
    else:  # expect_column_values_to_be_in_set
        bad = E.Not(this=E.In(this=v.copy(), expressions=[_literal(x) for x in kw["value_set"]]))
    return [named(count_if(not_null(v)), "considered"),
            named(count_if(E.and_(not_null(v), E.Coalesce(this=E.paren(bad), expressions=[E.false()]))), "unexpected")]


def _literal(value):
    from sqlglot import exp as E

    if isinstance(value, bool):
        return E.Boolean(this=value)
    if isinstance(value, (int, float)):
        return E.Literal.number(value)
    return E.Literal.string(str(value))


def run_spark(frame, expectations: list[dict]) -> list[Result]:
    """Every expectation of a suite on one Spark DataFrame, as one aggregate job."""
    from sqlglot import exp as E

    dtypes = dict(frame.dtypes)
    aggs = [E.alias_(E.Count(this=E.Star()), "n", quoted=True)]
    for i, exp in enumerate(expectations):
        aggs += sql_aggregates(exp, dtypes, f"e{i}_")
    row = frame.selectExpr(*[a.sql(dialect="spark") for a in aggs]).collect()[0].asDict()
    return [judge(exp, _figures(row, i)) for i, exp in enumerate(expectations)]


# ---------------------------------------------------------------- GE's rules


def _mostly(considered: int, unexpected: int, mostly: float) -> bool:
    """GE's `_mostly_success`, to the float."""
    return (float(considered) - float(unexpected)) / float(considered) >= mostly


def _between(value, kw: dict) -> bool:
    """GE's `_validate_metric_value_between` for a number."""
    lo, hi = kw.get("min_value"), kw.get("max_value")
    above = True if lo is None else (value > lo if kw.get("strict_min") else value >= lo)
    below = True if hi is None else (value < hi if kw.get("strict_max") else value <= hi)
    return bool(above and below)


def judge(exp: dict, fig: dict) -> Result:
    """GE's verdict on one expectation, from the counts of its aggregate query."""
    kw = exp.get("kwargs", {})
    n = fig["n"]
    if "observed" in fig:
        value = fig["observed"]
        if value is None or value != value:  # no value to average: GE reports None and fails
            return Result(False, n, None, None, None)
        return Result(_between(value, kw), n, None, None, value)
    considered, unexpected = int(fig["considered"]), int(fig["unexpected"])
    mostly = kw.get("mostly", 1.0)
    success = True if n == 0 or considered == 0 else _mostly(considered, unexpected, mostly)
    return Result(success, n, considered, unexpected)


