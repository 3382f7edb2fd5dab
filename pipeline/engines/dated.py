"""One trial judged at many reference dates on one registry: the evaluation path of `--history`.

`Dated(registry, trial, engine).at(day)` gives, for each date, exactly the statuses that
`pipeline.engines.evaluate(registry, trial, day, engine)` gives (patient_id, site_id,
status, a column per criterion; sorted by patient_id), without the evidence columns,
which the history does not use. What is shared across dates, so that a date costs less
than a run:

- both engines: only `patient_id, status` of each criterion is asked for, so the plans
  (Polars projection pushdown, DuckDB column pruning) skip what only feeds evidence;
- DuckDB: one connection with the tables copied into DuckDB's storage once
  (`duckdb_engine.Session(native=True)`), one query text per criterion with `$as_of` bound
  at each date;
- the EDSS levels of the progression blocks (the windows over every EDSS visit, most of a
  run's evaluation): computed once over the whole series, and each date derives its own
  from them exactly; only the visits still unconfirmed at a date take a window then.
  DuckDB: `precompute_levels` rewrites the `sql/blocks/edss_levels.sql` CTEs of the query;
  Polars: `polars_progression.valid_and_levels` with a cache kept in `Dated`.

tests/test_history.py checks every date against a separate run at that date.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import polars as pl
import sqlglot
from sqlglot import exp

from pipeline.criteria import Trial
from pipeline.engines import _attach, birth_end, combine_ends, overall_status
from pipeline.inputs.registry import Registry

PID = "patient_id"
# The columns of edss_levels.sql's `windows` and `levels` CTEs that `levels_at` relies on.
WINDOWS_COLUMNS = ["pk", "day", "edss", "c_day", "c_edss", "win_min", "after_min"]
LEVELS_COLUMNS = ["pk", "day", "edss", "c_day", "conf_level", "pend_level"]
LEVELS_PARTS = ("series", "onsets", "valid", "windows")
END_OF_TIME = "9999-12-31"


class Dated:
    """The statuses of one trial at any reference date, on a registry read and validated once."""

    def __init__(self, registry: Registry, trial: Trial, engine: str):
        if engine not in ("polars", "duckdb", "spark"):
            raise ValueError(f"unknown engine {engine!r}")
        self.registry, self.trial, self.engine = registry, trial, engine
        self.session = None
        self.ends = None
        intervals = getattr(registry, "birth_intervals", None)
        if intervals is not None and intervals.height and engine != "spark":
            # birth dates known as intervals: each end judged, as `evaluate` does (engines.combine_ends)
            self.ends = tuple(Dated(birth_end(registry, end), trial, engine)
                              for end in ("birth_earliest", "birth_latest"))
            return
        if engine == "spark":  # each date is a Spark run's evaluation: the same SQL, the date bound
            return
        self.absent = set(registry.absent)
        self.base = registry.tables["patients"].select(PID, "site_id")
        self.positions = self.base.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("pos")).to_series()
        order = self.base[PID].arg_sort()  # the order of `evaluate`'s sort by patient_id, computed once
        self.order = None if order.equals(self.positions.cast(order.dtype)) else order
        self.undated: dict[str, pl.DataFrame] = {}
        if engine == "duckdb":
            from pipeline.engines.duckdb_engine import Session

            self.session = Session(registry.tables, native=True)
            self.sql = {c.id: history_sql(c.node, self.session) for c in trial.criteria}
        else:
            self.lazy = {name: frame.lazy() for name, frame in registry.tables.items()}
            self.levels: dict = {}  # the EDSS windows over the whole series, per progression parameters

    def results(self, day: dt.date) -> dict[str, pl.DataFrame]:
        """Per criterion, in the patients' order: DuckDB `pos, status` (a query that does not read the
        reference date is run once, at the first date); Polars `patient_id, status`."""
        if self.engine == "duckdb":
            out = {}
            for cid, (sql, dated) in self.sql.items():
                if dated or cid not in self.undated:
                    out[cid] = self.session.query(sql, day if dated else None)
                    if not dated:
                        self.undated[cid] = out[cid]
                else:
                    out[cid] = self.undated[cid]
            return out
        from pipeline.criteria.to_polars import Ctx, compile_node

        ctx = Ctx(self.lazy, day, self.levels)
        plans = [compile_node(c.node, ctx).select(PID, "status") for c in self.trial.criteria]
        return dict(zip(self.trial.ids, pl.collect_all(plans)))

    def at(self, day: dt.date) -> pl.DataFrame:
        """patient_id, site_id, status and a column per criterion, as `engines.evaluate` has them."""
        if self.ends is not None:
            return combine_ends(self.ends[0].at(day), self.ends[1].at(day), self.trial)
        if self.engine == "spark":
            from pipeline.engines import evaluate

            return evaluate(self.registry, self.trial, day, "spark").select(PID, "site_id", "status", *self.trial.ids)
        results = self.results(day)
        base = self.base
        for c in self.trial.criteria:
            res = results[c.id]
            if "pos" in res.columns:  # DuckDB: placed by position (checked), not by comparing a million ids
                if not res["pos"].equals(self.positions):
                    res = self.positions.to_frame().join(res, on="pos", how="left", maintain_order="left")
                status = res["status"].cast(pl.Utf8)
                if set(c.tables) & self.absent:  # an absent table is not an empty one: nothing can be judged
                    status = pl.repeat("unknown", base.height, dtype=pl.Utf8, eager=True)
                base = base.with_columns(status.alias(c.id))
                continue
            res = res.select(PID, pl.col("status").cast(pl.Utf8))
            if set(c.tables) & self.absent:
                res = res.with_columns(pl.lit("unknown").alias("status"))
            base = _attach(base, res.rename({"status": c.id}))
        ids = self.trial.ids
        out = base.with_columns(overall_status(ids).alias("status")).select(PID, "site_id", "status", *ids)
        return out if self.order is None else out[self.order]  # sorted by patient_id, as evaluate sorts

    def close(self) -> None:
        for end in self.ends or ():
            end.close()
        if self.session is not None:
            self.session.close()
            self.session = None


# ---------------------------------------------------------------- DuckDB: one query text per criterion

def history_sql(node, session) -> tuple[str, bool]:
    """The criterion's status query for the history (pos, status in patient order), with the EDSS
    levels of its progression blocks read from tables precomputed in `session`; and whether it is dated."""
    from pipeline.criteria.to_sql import criterion_query
    from pipeline.engines.duckdb_engine import in_patient_order

    query = criterion_query(node)
    precompute_levels(query, session)
    # Each patient's position (patient_order.pos) rather than the id: the statuses are placed by it.
    full = in_patient_order(query, [exp.column("pos", "o"), exp.column("status", "r")])
    return full.sql(dialect="duckdb"), full.find(exp.Placeholder) is not None


def _d() -> exp.Expression:
    """The reference date as days since 1970-01-01, as edss_levels.sql counts days."""
    return exp.Sub(this=exp.cast(exp.Placeholder(this="as_of"), exp.DataType.build("date")),
                   expression=exp.cast(exp.Literal.string("1970-01-01"), exp.DataType.build("date")))


def _names(select: exp.Expression) -> list[str]:
    return [e.alias_or_name for e in select.expressions]


def precompute_levels(query: exp.Select, session) -> None:
    """Rewrite, in place, each `edss_levels` include of the query (CTEs <p>_series, _onsets, _valid,
    _windows, _levels) to read a table computed once in the session over the whole series.

    Exactness, at a date D (days are unique per patient in the series):
    - the series, the onsets and the valid visits at D are those of the whole export dated <= D: a visit
      is excluded by an onset in [day - exclusion, day], and such an onset is <= day <= D anyway;
    - c_day (the first valid visit >= day + confirmation_days), c_edss and win_min (the lowest EDSS in
      [day, day + confirmation_days)) at D equal the whole series' values when that c_day is <= D: every
      visit they look at is then dated <= D; otherwise c_day is null at D, and so is conf_level;
    - after_min, needed only where c_day is null at D, is the lowest EDSS from the visit to D. The visits
      whose c_day is null at D are the last ones of each patient's series up to D (a later visit has a
      later c_day), so a window over those visits alone gives it.
    """
    with_ = query.args.get("with_")
    if with_ is None:
        return
    ctes = {c.alias: c for c in with_.expressions}
    for name in list(ctes):
        if not name.endswith("_levels"):
            continue
        p = name[: -len("_levels")]
        parts = {s: ctes.get(f"{p}_{s}") for s in LEVELS_PARTS}
        if any(v is None for v in parts.values()):  # never silently slow: the block's steps are known
            raise RuntimeError(f"{p}: sql/blocks/edss_levels.sql changed; update pipeline/engines/dated.py")
        if _names(parts["windows"].this) != WINDOWS_COLUMNS or _names(ctes[name].this) != LEVELS_COLUMNS:
            raise RuntimeError(f"{p}: sql/blocks/edss_levels.sql changed; update pipeline/engines/dated.py")
        dropped = {f"{p}_{s}" for s in ("series", "onsets", "windows")}
        for other, cte in ctes.items():
            if other not in dropped and other != name and other != f"{p}_valid":
                if any(t.name in dropped for t in cte.this.find_all(exp.Table)):
                    raise RuntimeError(f"{other} reads {sorted(dropped)}; update pipeline/engines/dated.py")

        def end_of_time(e: exp.Expression) -> exp.Expression:
            if isinstance(e, exp.Placeholder):
                return exp.Literal.string(END_OF_TIME)
            return e

        pre = exp.select(*[exp.column(c) for c in WINDOWS_COLUMNS[:-1]]).from_(exp.to_table(f"{p}_windows"))
        for s in LEVELS_PARTS:
            pre = pre.with_(f"{p}_{s}", as_=parts[s].this.transform(end_of_time), copy=False)
        table = session_table(session, pre.sql(dialect="duckdb"))
        types = dict(session.con.sql(f"select column_name, column_type from (describe {table})").fetchall())
        d = _d().sql(dialect="duckdb")
        levels = sqlglot.parse_one(
            f"select pk, day, edss, c_day, least(win_min, c_edss) as conf_level, "
            f"cast(null as {types['edss']}) as pend_level from {table} where c_day <= {d} "
            f"union all "
            f"select pk, day, edss, cast(null as {types['c_day']}) as c_day, cast(null as {types['edss']}) as conf_level, "
            f"min(edss) over (partition by pk order by day rows between current row and unbounded following) "
            f"as pend_level from {table} where day <= {d} and (c_day is null or c_day > {d})", read="duckdb")
        valid = sqlglot.parse_one(f"select pk, day, edss from {table} where day <= {d}", read="duckdb")
        parts["valid"].set("this", valid)
        ctes[name].set("this", levels)
        with_.set("expressions", [c for c in with_.expressions if c.alias not in dropped])


def session_table(session, sql: str) -> str:
    """A temporary table of the query's result, created once per session (named by the query's text)."""
    name = "levels_" + hashlib.sha256(sql.encode()).hexdigest()[:16]
    made = session.__dict__.setdefault("_made", set())
    if name not in made:
        session.con.execute(f"create temp table {name} as {sql}")
        made.add(name)
    return name
