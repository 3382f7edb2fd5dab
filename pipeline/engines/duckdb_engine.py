"""The DuckDB engine: every criterion compiled to SQL (`pipeline.criteria.to_sql`), run with `$as_of` bound.

The accepted tables are registered as DuckDB relations (Arrow, no copy). Each
criterion's query is wrapped, as an AST too, so that its rows come back in the order
of the patients table (`patient_order`, each patient's position, is registered beside
the tables): the results of all criteria then line up row by row and are placed side
by side rather than joined (pipeline/engines/__init__.py checks the ids match).
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl
from sqlglot import exp

from pipeline.criteria.load import Criterion
from pipeline.criteria.to_sql import PID, col, criterion_query, table


def in_patient_order(query: exp.Select) -> exp.Select:
    return (exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("r")))
            .from_(exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier("r"))))
            .join(table("patient_order", "o"), on=col(PID, "o").eq(col(PID, "r")), join_type="inner")
            .order_by(col("pos", "o")))


def criterion_sql(criterion: Criterion) -> tuple[str, bool]:
    """The criterion's query in patient order, and whether it reads the reference date."""
    query = in_patient_order(criterion_query(criterion.node))
    return query.sql(dialect="duckdb"), query.find(exp.Placeholder) is not None


def evaluate(tables: dict[str, pl.DataFrame], criteria: list[Criterion], as_of: dt.date,
             threads: int | None = None) -> dict[str, pl.DataFrame]:
    con = duckdb.connect()
    if threads:
        con.execute(f"set threads = {int(threads)}")
    for name, frame in tables.items():
        con.register(name, frame.to_arrow())
    con.register("patient_order", tables["patients"].select(PID).with_row_index("pos").to_arrow())
    out = {}
    for c in criteria:
        sql, dated = criterion_sql(c)
        out[c.id] = pl.from_arrow(con.sql(sql, params={"as_of": as_of} if dated else None).to_arrow_table())
    con.close()
    return out
