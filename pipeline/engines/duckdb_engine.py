"""The DuckDB engine: each rule of the trial as a SQL file in `sql/rules/`, run with bound parameters.

The accepted tables are registered as DuckDB relations (Arrow, no copy); each
criterion runs its rule's file with `$as_of` and that criterion's parameters bound,
never pasted into the text.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from pipeline.trial import Criterion

_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")


def sql_dir() -> Path:
    """`sql/` of the checkout (editable install) or the copy shipped inside the package."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_sql", here.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the sql/ folder of msfeas is missing from this installation")


@cache
def rule_sql(rule: str) -> str:
    return (sql_dir() / "rules" / f"{rule}.sql").read_text("utf-8")


@cache
def in_patient_order() -> str:
    return (sql_dir() / "in_patient_order.sql").read_text("utf-8")


def bind(sql: str, criterion: Criterion, as_of: dt.date) -> dict:
    """Exactly the parameters the SQL text names (DuckDB refuses extra ones)."""
    values = {"as_of": as_of, **criterion.parameters}
    names = set(_PARAM.findall(sql))
    missing = names - set(values)
    if missing:
        raise KeyError(f"sql/rules/{criterion.rule}.sql uses undefined parameter(s) {sorted(missing)}")
    return {k: values[k] for k in names}


def evaluate(tables: dict[str, pl.DataFrame], criteria: list[Criterion], as_of: dt.date,
             threads: int | None = None) -> dict[str, pl.DataFrame]:
    con = duckdb.connect()
    if threads:
        con.execute(f"set threads = {int(threads)}")
    for name, frame in tables.items():
        con.register(name, frame.to_arrow())
    con.register("patient_order", tables["patients"].select("patient_id").with_row_index("pos").to_arrow())
    out = {}
    for c in criteria:
        sql = rule_sql(c.rule)
        ordered = in_patient_order().replace("{rule}", sql.strip().rstrip(";"))
        out[c.id] = pl.from_arrow(con.sql(ordered, params=bind(sql, c, as_of)).to_arrow_table())
    con.close()
    return out
