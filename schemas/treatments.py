"""treatments.csv: one row per disease-modifying therapy episode."""

import polars as pl
import pandera.polars as pa

from schemas import rules as r


def schema(ctx: r.Context) -> pa.DataFrameSchema:
    vocab = ctx.vocabulary
    return pa.DataFrameSchema({
        "patient_id": r.column(nullable=False),
        "drug": r.column([r.row_check(
            lambda c: vocab.generic(pl.col(c)).is_not_null(),
            f"{{column}} '{{value}}' is not in the drug vocabulary ({vocab.source}): map it there")],
            nullable=False),
        "start_date": r.column([r.is_date(ctx)], nullable=False),
        "end_date": r.column([r.is_date(ctx), r.not_before(ctx, "start_date")]),
    }, name="treatments")


def typed(ctx: r.Context) -> list[pl.Expr]:
    d, vocab = ctx.dialect, ctx.vocabulary
    generic = vocab.generic(pl.col("drug"))
    return [
        pl.col("patient_id"), generic.alias("drug"), vocab.line(generic).alias("line"),
        r.parse_date(pl.col("start_date"), d).alias("start_date"),
        r.parse_date(pl.col("end_date"), d).alias("end_date"),
    ]
