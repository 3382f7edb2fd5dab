"""Building blocks of the table schemas: parsing the raw strings and pandera checks.

Every schema validates the *raw* trimmed strings of a table, so that a failure case
is the value exactly as the registry wrote it and the quarantine reason can quote
it. The same parse functions turn accepted rows into typed columns afterwards, so
"what counts as a date or a number" is defined once.

Check `error` texts are reason templates: `{column}` and `{value}` are filled in from
pandera's failure cases to give the plain-language `_reason` of a quarantined row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from pipeline.core.imports import pandera_polars_only

with pandera_polars_only():
    import pandera.polars as pa
import polars as pl

from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import DrugVocabulary

MIN_DATE = dt.date(1900, 1, 1)


@dataclass(frozen=True)
class Context:
    """What the rules depend on besides the data: dialect, today's date, vocabulary."""

    dialect: Dialect
    today: dt.date
    vocabulary: DrugVocabulary

    @property
    def date_example(self) -> str:
        return dt.date(2024, 3, 31).strftime(self.dialect.date_format)


# ---- parsing: raw string -> typed value (null when it does not parse) -------------

def parse_date(expr: pl.Expr, dialect: Dialect) -> pl.Expr:
    return expr.str.to_date(dialect.date_format, strict=False)


def parse_float(expr: pl.Expr, dialect: Dialect) -> pl.Expr:
    if dialect.decimal == ",":
        expr = expr.str.replace(",", ".", literal=True)
    value = expr.cast(pl.Float64, strict=False)
    # "nan" and "inf" parse as floats but are not numbers a registry can mean.
    return pl.when(value.is_finite()).then(value)


def parse_int(expr: pl.Expr, dialect: Dialect) -> pl.Expr:
    """A whole number; `70.0` from a spreadsheet is accepted as 70."""
    value = parse_float(expr, dialect)
    return pl.when(value == value.floor()).then(value).cast(pl.Int64, strict=False)


def upper(expr: pl.Expr) -> pl.Expr:
    return expr.str.to_uppercase()


def lower(expr: pl.Expr) -> pl.Expr:
    return expr.str.to_lowercase()


# ---- checks ---------------------------------------------------------------------

def row_check(predicate: Callable[[str], pl.Expr], error: str) -> pa.Check:
    """A check whose predicate is a polars expression on the row; empty values pass.

    `predicate(key)` gets the column name and may read other columns of the row.
    Emptiness is a separate rule (the column's `nullable`), so each row breaks a rule
    once, and the reason says which.
    """

    return expr_check(lambda key: pl.col(key).is_null() | predicate(key).fill_null(False), error)


def expr_check(row_ok: Callable[[str | None], pl.Expr], error: str, name: str | None = None, *,
               column: str | None = None) -> pa.Check:
    """A pandera check whose rows pass where `row_ok(key)` is true, carrying that expression for `screen`.

    pandera's check and the screen are built from the one expression, so they cannot
    drift apart. A frame-level check (pandera's key is then "*") names its output `column`.
    """
    check = pa.Check(lambda data: data.lazyframe.select(row_ok(data.key).alias(column or data.key)),
                     error=error, name=name or error)
    check.row_ok = row_ok
    return check


def screen(schema: pa.DataFrameSchema) -> pl.Expr:
    """True for a row that passes every rule of `schema`: all its checks as one expression.

    pandera runs each check as a separate query and reports failure cases; at tens of
    millions of rows that costs several passes per column. Evaluated once, this
    expression tells which rows can fail at all, and pandera validates those alone,
    so the reasons stay pandera's. It is built from the very expressions the checks
    run, so a row it passes cannot fail them; a check without `row_ok` is refused
    rather than silently skipped.
    """
    parts: list[pl.Expr] = []
    for name, col in schema.columns.items():
        if not col.nullable:
            parts.append(pl.col(name).is_not_null())
        parts += [_row_ok(chk, schema.name)(name) for chk in col.checks]
    parts += [_row_ok(chk, schema.name)(None) for chk in schema.checks]
    return pl.all_horizontal(parts) if parts else pl.lit(True)


def _row_ok(check: pa.Check, where: str) -> Callable[[str | None], pl.Expr]:
    if not hasattr(check, "row_ok"):
        raise TypeError(f"check {check.name!r} of schema {where!r} has no row_ok: build it with rules.expr_check")
    return check.row_ok


def is_date(ctx: Context) -> pa.Check:
    return row_check(lambda c: parse_date(pl.col(c), ctx.dialect).is_not_null(),
                     f"{{column}} '{{value}}' is not a date like {ctx.date_example} ({ctx.dialect.date_format})")


def date_between(ctx: Context, low: dt.date, high: dt.date, high_label: str) -> pa.Check:
    def pred(c):
        d = parse_date(pl.col(c), ctx.dialect)
        return d.is_null() | d.is_between(pl.lit(low), pl.lit(high))
    return row_check(pred, f"{{column}} '{{value}}' is outside {low.isoformat()} .. {high_label}")


def not_before(ctx: Context, other: str) -> pa.Check:
    """End dates: not before the start column of the same row (unparseable dates pass here)."""
    def pred(c):
        end, start = parse_date(pl.col(c), ctx.dialect), parse_date(pl.col(other), ctx.dialect)
        return end.is_null() | start.is_null() | (end >= start)
    return row_check(pred, f"{{column}} '{{value}}' is before {other}")


def is_number(ctx: Context) -> pa.Check:
    return row_check(lambda c: parse_float(pl.col(c), ctx.dialect).is_not_null(),
                     f"{{column}} '{{value}}' is not a number (decimal mark '{ctx.dialect.decimal}')")


def is_whole(ctx: Context) -> pa.Check:
    return row_check(lambda c: parse_int(pl.col(c), ctx.dialect).is_not_null(),
                     "{column} '{value}' is not a whole number")


def number_rule(ctx: Context, ok: Callable[[pl.Expr], pl.Expr], text: str) -> pa.Check:
    """A rule on the parsed number; a value that does not parse is left to `is_number`."""
    def pred(c):
        v = parse_float(pl.col(c), ctx.dialect)
        return v.is_null() | ok(v)
    return row_check(pred, f"{{column}} '{{value}}' {text}")


def one_of(values: list[str], fold: Callable[[pl.Expr], pl.Expr] = upper) -> pa.Check:
    """A code list, matched case-insensitively (`fold` gives the canonical case)."""
    folded = pl.select(fold(pl.Series(values))).to_series().to_list()
    return row_check(lambda c: fold(pl.col(c)).is_in(folded),
                     "{column} '{value}' is not one of " + ", ".join(values))


def matches(pattern: str, text: str) -> pa.Check:
    return row_check(lambda c: pl.col(c).str.contains(pattern), "{column} '{value}' " + text)


def column(checks: list[pa.Check] | None = None, *, nullable: bool = True) -> pa.Column:
    return pa.Column(pl.Utf8, checks=checks or [], nullable=nullable, required=True)


def field_count(n: int) -> pa.Column:
    """A row with more or fewer fields than the header is malformed."""
    return pa.Column(pl.Int64, checks=[expr_check(
        lambda key: pl.col(key) == n, f"row has {{value}} fields where the header has {n}", "field count")])
