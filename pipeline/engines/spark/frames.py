"""Moving frames between Polars and Spark through Arrow (never pandas: pyspark 4.3 does not
fully support pandas 3, and Arrow keeps dates and nulls exact).

`to_polars` is how results (one row per patient at most) reach the driver's writers;
`to_spark` serves tests and small lookup frames, never an export's table.
"""

from __future__ import annotations

import polars as pl


def to_polars(frame) -> pl.DataFrame:
    """A Spark DataFrame's rows as a Polars frame (through `toArrow`)."""
    return pl.from_arrow(frame.toArrow())


def spark_type(dtype: pl.DataType):
    from pyspark.sql import types as T

    if dtype == pl.Date:
        return T.DateType()
    if dtype.is_integer():
        return T.LongType()
    if dtype.is_float():
        return T.DoubleType()
    if dtype == pl.Boolean:
        return T.BooleanType()
    return T.StringType()


def spark_schema(schema: pl.Schema | dict):
    from pyspark.sql import types as T

    return T.StructType([T.StructField(n, spark_type(d), True) for n, d in schema.items()])


def to_spark(spark, frame: pl.DataFrame):
    """A Polars frame as a Spark DataFrame with the matching explicit schema (an empty frame too)."""
    schema = spark_schema(frame.schema)
    casts = [pl.col(n).cast(pl.Int64) if d.is_integer() else pl.col(n).cast(pl.Float64) if d.is_float()
             else pl.col(n) if d in (pl.Date, pl.Boolean) else pl.col(n).cast(pl.Utf8)
             for n, d in frame.schema.items()]
    table = frame.select(casts).to_arrow()
    return spark.createDataFrame(table, schema=schema)
