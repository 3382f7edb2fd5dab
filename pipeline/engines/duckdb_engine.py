"""The DuckDB engine: every criterion compiled to SQL (`pipeline.criteria.to_sql`), run with `$as_of` bound.

The accepted tables are registered as DuckDB relations (Arrow, no copy). Each
criterion's query is wrapped, as an AST too, so that its rows come back in the order
of the patients table (`patient_order`, each patient's position, is registered beside
the tables): the results of all criteria then line up row by row and are placed side
by side rather than joined (pipeline/engines/__init__.py checks the ids match).

A `Session` is one connection with the tables registered once: a single-date run opens
one for its date; `--history` (pipeline/engines/dated.py) keeps one open for all dates.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from pipeline.criteria.load import Criterion
from pipeline.engines import sql_cache

PID = "patient_id"


def in_patient_order(query, columns: list | None = None):
    """The query (as `r`) in the patients table's order (`patient_order` as `o`); `columns`: what to
    select instead of all of r's columns (e.g. `o.pos, r.status` for the history)."""
    from sqlglot import exp

    from pipeline.criteria.to_sql import col, table

    return (exp.select(*(columns or [exp.Column(this=exp.Star(), table=exp.to_identifier("r"))]))
            .from_(exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier("r"))))
            .join(table("patient_order", "o"), on=col(PID, "o").eq(col(PID, "r")), join_type="inner")
            .order_by(col("pos", "o")))


def criterion_sql(criterion: Criterion) -> tuple[str, bool]:
    """The criterion's query in patient order, and whether it reads the reference date (from the
    compiled-query cache when a run keeps one: `pipeline.engines.sql_cache`)."""
    return sql_cache.compiled(criterion.node, "duckdb", lambda: _compile(criterion))


def _compile(criterion: Criterion) -> tuple[str, bool]:
    from sqlglot import exp

    from pipeline.criteria.to_sql import criterion_query

    query = in_patient_order(criterion_query(criterion.node))
    return query.sql(dialect="duckdb"), query.find(exp.Placeholder) is not None


class Session:
    """One DuckDB connection with the accepted tables and `patient_order` registered (once)."""

    def __init__(self, tables: dict[str, pl.DataFrame], threads: int | None = None, native: bool = False):
        """`native`: copy the tables into DuckDB's own storage once (for many queries: `--history`),
        rather than scanning the Arrow data at every query."""
        self.con = duckdb.connect()
        if threads:
            self.con.execute(f"set threads = {int(threads)}")
        for name, frame in tables.items():
            if native:
                self.con.register("arrow_input", frame.to_arrow())
                self.con.execute(f'create temp table "{name}" as select * from arrow_input')
                self.con.unregister("arrow_input")
            elif isinstance(frame, pl.LazyFrame):  # a shard's table no criterion of this run reads
                self.con.register(name, frame)
            else:
                self.con.register(name, frame.to_arrow())
        self.con.register("patient_order", tables["patients"].select(PID).with_row_index("pos").to_arrow())

    def query(self, sql: str, as_of: dt.date | None) -> pl.DataFrame:
        """Run one query, `$as_of` bound when given."""
        return pl.from_arrow(self.con.sql(sql, params={"as_of": as_of} if as_of is not None else None)
                             .to_arrow_table())

    def close(self) -> None:
        self.con.close()


def evaluate(tables: dict[str, pl.DataFrame], criteria: list[Criterion], as_of: dt.date,
             threads: int | None = None) -> dict[str, pl.DataFrame]:
    session = Session(tables, threads)
    out = {}
    try:
        for c in criteria:
            sql, dated = criterion_sql(c)
            out[c.id] = session.query(sql, as_of if dated else None)
    finally:
        session.close()
    return out
