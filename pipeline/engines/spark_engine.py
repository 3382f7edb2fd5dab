"""The Spark engine: every criterion compiled to SQL (`pipeline.criteria.to_sql`), rendered in
Spark's dialect and run with the reference date bound as the named parameter `:as_of`.

The accepted tables (pyspark DataFrames, as `pipeline.engines.spark.registry.SparkRegistry` holds
them) are registered as temporary views under their table names. Each criterion's query
returns one row per patient (`patient_id, status, <evidence...>`); it reaches the driver
through `toArrow()` only (never pandas: pyspark 4.3 does not fully support pandas 3), and
`pipeline.engines.evaluate` joins the results to the patients by patient_id.

The SQL is the same model as DuckDB's: `to_sql.render(query, "spark")` rewrites what the two
dialects mean differently (see `to_sql.for_dialect`), so the answers agree to the bit.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from sqlglot import exp

from pipeline.criteria.load import Criterion
from pipeline.criteria.to_sql import criterion_query, render

DIALECT = "spark"


def criterion_sql(criterion: Criterion) -> tuple[str, bool]:
    """The criterion's query in Spark SQL, and whether it reads the reference date."""
    query = criterion_query(criterion.node)
    return render(query, DIALECT, pretty=False), query.find(exp.Placeholder) is not None


def register(tables: dict) -> object:
    """Register the tables as temporary views; returns their Spark session."""
    spark = None
    for name, frame in tables.items():
        frame.createOrReplaceTempView(name)
        spark = frame.sparkSession
    return spark


def criterion_frame(spark, criterion: Criterion, as_of: dt.date):
    """The criterion's result as a (lazy) Spark DataFrame."""
    sql, dated = criterion_sql(criterion)
    return spark.sql(sql, args={"as_of": as_of} if dated else None)


def evaluate(tables: dict, criteria: list[Criterion], as_of: dt.date) -> dict[str, pl.DataFrame]:
    spark = register(tables)
    return {c.id: pl.from_arrow(criterion_frame(spark, c, as_of).toArrow()) for c in criteria}
