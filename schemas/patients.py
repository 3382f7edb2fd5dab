"""patients.csv: one row per patient (the only required table)."""

import pandera.polars as pa
import polars as pl

from schemas import rules as r
from schemas.codes import COURSES, SEXES, YES_NO


def schema(ctx: r.Context) -> pa.DataFrameSchema:
    today = ctx.today

    def past_date():
        return [r.is_date(ctx), r.date_between(ctx, r.MIN_DATE, today, "today")]

    return pa.DataFrameSchema({
        "patient_id": r.column([r.matches(r"^[A-Za-z0-9_-]{1,64}$", "is not 1-64 characters of A-Z a-z 0-9 _ -")],
                               nullable=False),
        "site_id": r.column(nullable=False),
        "sex": r.column([r.one_of(SEXES)]),
        "birth_date": r.column(past_date()),
        "onset_date": r.column(past_date()),
        "diagnosis_date": r.column(past_date()),
        "ms_course": r.column([r.one_of(COURSES)]),
        "research_consent": r.column([r.one_of(YES_NO)]),
        "death_date": r.column([r.is_date(ctx)]),
    }, name="patients")


def typed(ctx: r.Context) -> list[pl.Expr]:
    d = ctx.dialect
    return [
        pl.col("patient_id"), pl.col("site_id"),
        r.upper(pl.col("sex")).fill_null("U").alias("sex"),
        *[r.parse_date(pl.col(c), d).alias(c) for c in ("birth_date", "onset_date", "diagnosis_date")],
        r.upper(pl.col("ms_course")).fill_null("UNK").alias("ms_course"),
        r.upper(pl.col("research_consent")).alias("research_consent"),
        r.parse_date(pl.col("death_date"), d).alias("death_date"),
    ]
