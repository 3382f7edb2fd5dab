"""The Polars engine: every criterion compiled to a lazy plan (`pipeline.criteria.to_polars`), collected together.

The accepted tables come as DataFrames (an absent optional table as an empty frame of
its schema; `engines.evaluate` then marks its criteria `unknown`). Each plan returns
one row per patient in the patients' order: `patient_id, status, <evidence...>`.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.criteria.load import Criterion
from pipeline.criteria.to_polars import Ctx, compile_node


def evaluate(tables: dict[str, pl.DataFrame], criteria: list[Criterion], as_of: dt.date) -> dict[str, pl.DataFrame]:
    ctx = Ctx({name: frame.lazy() for name, frame in tables.items()}, as_of)
    plans = [compile_node(c.node, ctx) for c in criteria]
    return dict(zip([c.id for c in criteria], pl.collect_all(plans)))
