"""treatments.csv: one row per disease-modifying therapy episode."""

import pandera.polars as pa
import polars as pl

from schemas import rules as r

# Why an episode ended (canonical lower case). A value outside the list is read as
# `other` rather than quarantined: treatment rows are read by criteria that do not
# look at the reason. quality.py reports such values.
from schemas.codes import STOP_REASONS


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
        "stop_reason": r.column(),  # never quarantines a row: see STOP_REASONS
    }, name="treatments")


def stop_reason(ctx: r.Context) -> pl.Expr:
    """The canonical reason; null when not recorded or when the episode is ongoing (no end_date),
    `other` for a value outside the list."""
    reason = r.lower(pl.col("stop_reason"))
    ended = r.parse_date(pl.col("end_date"), ctx.dialect).is_not_null()
    return (pl.when(ended & reason.is_not_null())
            .then(pl.when(reason.is_in(STOP_REASONS)).then(reason).otherwise(pl.lit("other")))
            .otherwise(pl.lit(None, pl.Utf8)))


def typed(ctx: r.Context) -> list[pl.Expr]:
    """`stop_reason_given` keeps the reason as written (trimmed) for the data-quality findings
    (a value outside the list, a reason on an ongoing episode); criteria read `stop_reason`."""
    d, vocab = ctx.dialect, ctx.vocabulary
    generic = vocab.generic(pl.col("drug"))
    return [
        pl.col("patient_id"), generic.alias("drug"), vocab.line(generic).alias("line"),
        r.parse_date(pl.col("start_date"), d).alias("start_date"),
        r.parse_date(pl.col("end_date"), d).alias("end_date"),
        stop_reason(ctx).alias("stop_reason"), pl.col("stop_reason").alias("stop_reason_given"),
    ]
