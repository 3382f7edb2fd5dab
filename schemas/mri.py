"""mri.csv: MRI scans with their lesion counts (radiology report), many per patient."""

import pandera.polars as pa
import polars as pl

from schemas import rules as r

MAX_LESIONS = 999


def _lesion_count(ctx: r.Context) -> list[pa.Check]:
    """A whole number 0 .. 999; like karnofsky, `2.0` from a spreadsheet is read as 2."""
    return [r.is_whole(ctx), r.number_rule(
        ctx, lambda v: v.is_between(0, MAX_LESIONS), f"is not a lesion count (a whole number 0 .. {MAX_LESIONS})")]


def schema(ctx: r.Context) -> pa.DataFrameSchema:
    # Both counts may be empty on the same row: the scan took place, its activity is not recorded.
    return pa.DataFrameSchema({
        "patient_id": r.column(nullable=False),
        "scan_date": r.column([r.is_date(ctx)], nullable=False),
        "gd_lesions": r.column(_lesion_count(ctx)),
        "new_t2_lesions": r.column(_lesion_count(ctx)),
    }, name="mri")


def typed(ctx: r.Context) -> list[pl.Expr]:
    d = ctx.dialect
    return [
        pl.col("patient_id"), r.parse_date(pl.col("scan_date"), d).alias("scan_date"),
        r.parse_int(pl.col("gd_lesions"), d).alias("gd_lesions"),
        r.parse_int(pl.col("new_t2_lesions"), d).alias("new_t2_lesions"),
    ]
