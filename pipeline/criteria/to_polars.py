"""The criteria language compiled to lazy Polars plans: one function per node type.

`compile_node(node, ctx)` returns a LazyFrame with one row per patient in the
patients' order: `patient_id, status, <evidence...>`. Statuses are set by explicit
`when/then` on every branch, never by what a null happens to do; row filters are
written so that they are true or false on every row (an empty value is in no list).

The reference date D is read only through `ctx.D`, so that a later step can make it
a per-patient value without touching the node compilers' structure.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

import polars as pl

from pipeline.criteria import contract
from pipeline.criteria.nodes import Node, registrar
from pipeline.criteria.polars_helpers import (
    FAIL,
    PASS,
    PID,
    SCREENING,
    UNKNOWN,
    Tables,
    age_years,
    days_before,
    divide,
    latest,
    lit,
    on_patients,
    patients,
)
from pipeline.criteria.polars_progression import confirmed_progression, recent_progression


@dataclass
class Ctx:
    tables: Tables  # accepted tables as LazyFrames (an absent table as an empty frame of its schema)
    D: dt.date
    levels: dict | None = None  # --history: EDSS windows kept across dates (polars_progression.valid_and_levels)


COMPILERS: dict[str, Callable[[Node, Ctx], pl.LazyFrame]] = {}


compiles = registrar(COMPILERS)


def compile_node(node: Node, ctx: Ctx) -> pl.LazyFrame:
    return COMPILERS[node.type](node, ctx)


# ---------------------------------------------------------------- row filters and windows

def _nodots(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace_all(".", "", literal=True)


def _prefixed(c: pl.Expr, prefixes: list[str]) -> pl.Expr:
    """The code starts with one of the prefixes, compared without dots (an empty code starts with none)."""
    hit = pl.lit(False)
    for p in prefixes:
        hit = hit | _nodots(c).str.starts_with(p.replace(".", ""))
    return c.is_not_null() & hit


def _in(c: pl.Expr, values: list) -> pl.Expr:
    return c.is_not_null() & c.is_in(values) if values else pl.lit(False)


PREDICATES: dict[str, Callable[[pl.Expr, object], pl.Expr]] = {
    "equals": lambda c, v: c.is_not_null() & (c == v),
    "in": _in,
    "not_in": lambda c, v: ~_in(c, v),
    "prefix": _prefixed,
    "not_prefix": lambda c, v: ~_prefixed(c, v),
    "in_listed": lambda c, v: _in(c, v) if v else pl.lit(True),
    "prefix_listed": lambda c, v: _prefixed(c, v) if v else pl.lit(True),
    "empty": lambda c, v: c.is_null() if v else c.is_not_null(),
    "min": lambda c, v: c.is_not_null() & (c >= v),
    "max": lambda c, v: c.is_not_null() & (c <= v),
}


def where_expr(where: dict) -> pl.Expr:
    cond = pl.lit(True)
    for column, preds in where.items():
        if column == "any":
            either = pl.lit(False)
            for sub in preds:
                either = either | where_expr(sub)
            cond = cond & either
            continue
        for key, value in preds.items():
            cond = cond & PREDICATES[key](pl.col(column), value)
    return cond


def window_expr(table: str, D: dt.date, within_days: int | None) -> pl.Expr:
    """Rows dated within the last `within_days` days before D (None: ever, on or before D).

    An event is dated in [D - N, D]; an episode (start, end) is present in that window
    when it began on or before D (or its start is unknown) and had not ended before D - N.
    """
    if table in contract.EPISODE_DATES:
        start, end = (pl.col(c) for c in contract.EPISODE_DATES[table])
        began = start.is_null() | (start <= D)
        if within_days is None:
            return began
        return began & (end.is_null() | (end >= days_before(D, within_days)))
    date = pl.col(contract.EVENT_DATE[table])
    if within_days is None:
        return date.is_not_null() & (date <= D)
    return date.is_not_null() & date.is_between(days_before(D, within_days), D)


# ---------------------------------------------------------------- composites

def _statuses(node: Node, ctx: Ctx) -> tuple[pl.LazyFrame, list[pl.Expr], list[str]]:
    """The children joined on patient_id: frame, status columns, evidence.

    Joined, not placed side by side: Polars 2.1 loses a left join's `maintain_order`
    when projection pushdown prunes its key (a child's patient_id dropped before a
    horizontal concat came back in another order), so the ids are matched explicitly.
    """
    frames = [compile_node(child, ctx).rename({"status": f"_s{i}"}) for i, child in enumerate(node.children)]
    wide = frames[0]
    for f in frames[1:]:
        wide = wide.join(f, on=PID, how="left", maintain_order="left")
    return wide, [pl.col(f"_s{i}") for i in range(len(frames))], node.evidence()


def _combine(node: Node, ctx: Ctx, first: str, second: str, last: str) -> pl.LazyFrame:
    """`first` if any child has it, else `second` if any has it, else `last` (three-valued all/any)."""
    wide, s, ev = _statuses(node, ctx)
    status = (pl.when(pl.any_horizontal(*[x == first for x in s])).then(lit(first))
              .when(pl.any_horizontal(*[x == second for x in s])).then(lit(second)).otherwise(lit(last)))
    return wide.select(PID, status.alias("status"), *ev)


@compiles("all")
def _all(node: Node, ctx: Ctx) -> pl.LazyFrame:
    return _combine(node, ctx, FAIL, UNKNOWN, PASS)


@compiles("any")
def _any(node: Node, ctx: Ctx) -> pl.LazyFrame:
    return _combine(node, ctx, PASS, UNKNOWN, FAIL)


@compiles("not")
def _not(node: Node, ctx: Ctx) -> pl.LazyFrame:
    s = pl.col("status")
    flipped = pl.when(s == PASS).then(lit(FAIL)).when(s == FAIL).then(lit(PASS)).otherwise(lit(UNKNOWN))
    return compile_node(node.children[0], ctx).with_columns(flipped.alias("status"))


@compiles("screening")
def _screening(node: Node, ctx: Ctx) -> pl.LazyFrame:
    return patients(ctx.tables).with_columns(lit(SCREENING).alias("status"))


# ---------------------------------------------------------------- the patient's own fields

@compiles("patient_code")
def _patient_code(node: Node, ctx: Ctx) -> pl.LazyFrame:
    c = pl.col(node["column"])
    status = (pl.when(c.is_null()).then(lit(node["missing"]))
              .when(_in(c, node["pass"])).then(lit(PASS))
              .when(_in(c, node["unknown"])).then(lit(UNKNOWN))
              .when(_in(c, node["fail"])).then(lit(FAIL))
              .otherwise(lit(node["otherwise"])))
    return ctx.tables["patients"].select(PID, status.alias("status"))


@compiles("date_on_or_before")
def _date_on_or_before(node: Node, ctx: Ctx) -> pl.LazyFrame:
    c = pl.col(node["column"])
    return ctx.tables["patients"].select(
        PID, pl.when(c.is_not_null() & (c <= ctx.D)).then(lit(PASS)).otherwise(lit(FAIL)).alias("status"))


@compiles("age")
def _age(node: Node, ctx: Ctx) -> pl.LazyFrame:
    # A birth date after D is not known at D (nothing dated after D is used): unknown, as empty.
    born = pl.col("birth_date").is_not_null() & (pl.col("birth_date") <= ctx.D)
    a = pl.when(born).then(age_years(pl.col("birth_date"), ctx.D))
    within = pl.lit(True)
    if node["min"] is not None:
        within = within & (a >= node["min"])
    if node["max"] is not None:
        within = within & (a <= node["max"])
    return ctx.tables["patients"].select(
        PID, pl.when(~born).then(lit(UNKNOWN))
        .when(within).then(lit(PASS)).otherwise(lit(FAIL)).alias("status"), a.alias(node["as"]))


def years_to_D(column: str | None, D: dt.date) -> pl.Expr:
    """Years from a patient's date to D, (D - date) days / 365.25; a date after D is not known at D
    and counts as empty, like no column at all (None)."""
    if column is None:
        return pl.lit(None, pl.Float64)
    known = pl.col(column).is_not_null() & (pl.col(column) <= D)
    return pl.when(known).then(divide((pl.lit(D) - pl.col(column)).dt.total_days().cast(pl.Float64), 365.25))


@compiles("years_since")
def _years_since(node: Node, ctx: Ctx) -> pl.LazyFrame:
    limit = node["max_years"]
    primary = years_to_D(node["column"], ctx.D)
    fallback = years_to_D(node["fallback"], ctx.D)
    status = (pl.when(primary.is_not_null()).then(pl.when(primary < limit).then(lit(PASS)).otherwise(lit(FAIL)))
              # The fallback date (diagnosis) can only follow the primary one (onset): that old already fails.
              .when(fallback.is_not_null() & (fallback >= limit)).then(lit(FAIL))
              .otherwise(lit(UNKNOWN)))
    return ctx.tables["patients"].select(PID, status.alias("status"), pl.coalesce(primary, fallback).alias(node["as"]))


# ---------------------------------------------------------------- events

@compiles("count")
def _count(node: Node, ctx: Ctx) -> pl.LazyFrame:
    table = node["table"]
    rows = ctx.tables[table].filter(where_expr(node["where"]) & window_expr(table, ctx.D, node["within_days"]))
    date = contract.EVENT_DATE.get(table) or contract.EPISODE_DATES[table][0]
    # An empty date (a condition of unknown onset) is no date: it is not counted among distinct dates.
    n = pl.col(date).drop_nulls().n_unique() if node["distinct_dates"] else pl.len()
    per = rows.group_by(PID).agg(n.cast(pl.Int64).alias("_n"))
    count = pl.col("_n").fill_null(0)
    ok = pl.lit(True)
    if node["at_least"] is not None:
        ok = ok & (count >= node["at_least"])
    if node["at_most"] is not None:
        ok = ok & (count <= node["at_most"])
    evidence = [count.alias(node["as"])] if node["as"] else []
    return on_patients(patients(ctx.tables), per).select(
        PID, pl.when(ok).then(lit(PASS)).otherwise(lit(node["otherwise"])).alias("status"), *evidence)


@compiles("latest_value")
def _latest_value(node: Node, ctx: Ctx) -> pl.LazyFrame:
    table, name = node["table"], node["as"]
    rows = ctx.tables[table].filter(where_expr(node["where"]))
    worst = "max" if node["tie"] == "highest" else "min"
    got = latest(rows, contract.EVENT_DATE[table], node["column"], ctx.D, node["lookback_days"], worst, name)
    v = pl.col(name)
    within = pl.lit(True)
    if node["min"] is not None:
        within = within & (v >= node["min"])
    if node["max"] is not None:
        within = within & (v <= node["max"])
    return on_patients(patients(ctx.tables), got).select(
        PID, pl.when(v.is_null()).then(lit(UNKNOWN)).when(within).then(lit(PASS)).otherwise(lit(FAIL)).alias("status"),
        name, f"{name}_date")


# ---------------------------------------------------------------- custom blocks

def lab_results(ctx: Ctx, test: str, days: int, default_uln: float, umol_per_mg_dl: float | None) -> pl.LazyFrame:
    """One test's results within `days` of D, on the latest date of each patient: ratio = value / ULN, mg_dl.

    ULN: the row's ref_high (same unit as the value), else the default ULN (in U/L or
    umol/L) converted to the row's unit. mg_dl is the value in mg/dL (null without a
    conversion factor).
    """
    unit = pl.col("unit")
    if umol_per_mg_dl is None:
        default, mg_dl = pl.lit(default_uln), pl.lit(None, pl.Float64)
    else:
        default = pl.when(unit == "mg/dL").then(pl.lit(default_uln / umol_per_mg_dl)).otherwise(pl.lit(default_uln))
        mg_dl = pl.when(unit == "mg/dL").then(pl.col("value")).otherwise(divide(pl.col("value"), umol_per_mg_dl))
    f = (ctx.tables["labs"]
         .filter((pl.col("test") == test) & pl.col("sample_date").is_between(days_before(ctx.D, days), ctx.D))
         .with_columns(divide(pl.col("value"), pl.coalesce(pl.col("ref_high"), default)).alias("ratio"),
                       mg_dl.alias("mg_dl")))
    return f.filter(pl.col("sample_date") == pl.col("sample_date").max().over(PID))


@compiles("lab_uln")
def _lab_uln(node: Node, ctx: Ctx) -> pl.LazyFrame:
    rows = lab_results(ctx, node["test"], node["lookback_days"], node["default_uln"], node["umol_per_mg_dl"])
    # The worst of a same-day tie: the highest ratio.
    per = rows.group_by(PID).agg(pl.col("ratio").max().alias(node["as"]))
    r = pl.col(node["as"])
    return on_patients(patients(ctx.tables), per).select(
        PID, pl.when(r.is_null()).then(lit(UNKNOWN)).when(r > node["max_uln"]).then(lit(FAIL))
        .otherwise(lit(PASS)).alias("status"), node["as"])


@compiles("creatinine_clearance")
def _creatinine_clearance(node: Node, ctx: Ctx) -> pl.LazyFrame:
    rows = lab_results(ctx, "CREAT", node["lab_lookback_days"], node["creat_default_uln_umol"],
                       node["creat_umol_per_mg_dl"])
    # The creatinine that lab_uln judges: highest ratio of a same-day tie, then the highest
    # value in mg/dL (a total order on what is used, so that every engine picks the same row).
    creat = (rows.sort(PID, "ratio", "mg_dl", descending=[False, True, True], nulls_last=True)
             .group_by(PID).agg(pl.col("mg_dl").first().alias("creat_mg_dl")))
    weight = latest(ctx.tables["visits"], "visit_date", "weight_kg", ctx.D, node["weight_lookback_days"], "min",
                    "weight")
    a = age_years(pl.col("birth_date"), ctx.D)
    # Cockcroft-Gault, in the order the formula is written (every engine alike).
    male = (pl.lit(140, pl.Int64) - a).cast(pl.Float64) * pl.col("weight") / (pl.lit(72.0) * pl.col("creat_mg_dl"))
    female = male * node["female_factor"]
    sex, lo = pl.col("sex"), node["min_crcl"]
    crcl = pl.when(sex == "F").then(female).when(sex == "M").then(male)
    # Unknown sex: decided only when the male and the female value agree.
    status = (pl.when(male.is_null()).then(lit(UNKNOWN))
              .when(sex.is_in(["F", "M"])).then(pl.when(crcl < lo).then(lit(FAIL)).otherwise(lit(PASS)))
              .when(male < lo).then(lit(FAIL)).when(female >= lo).then(lit(PASS)).otherwise(lit(UNKNOWN)))
    return (on_patients(ctx.tables["patients"].select(PID, "sex", "birth_date"), creat, weight)
            .select(PID, status.alias("status"), crcl.alias("crcl"), "creat_mg_dl", "weight", "weight_date"))


@compiles("confirmed_progression")
def _confirmed_progression(node: Node, ctx: Ctx) -> pl.LazyFrame:
    return confirmed_progression(ctx.tables, node.args, ctx.D, ctx.levels)


# ---------------------------------------------------------------- activity: events, episodes, on-treatment periods

def _day(expr: pl.Expr) -> pl.Expr:
    """A date as whole days since 1970-01-01 (windows are integer ranges)."""
    return expr.cast(pl.Int64)


def event_days(node: Node, ctx: Ctx) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The distinct (patient, day) of the known events and of the possible events (known ones included),
    dated within the node's window."""
    known, possible = [], []
    for src in node["events"]:
        tbl = src["table"]
        rows = ctx.tables[tbl].filter(window_expr(tbl, ctx.D, node["window_days"]))
        is_known = where_expr(src["where"])
        may_be = is_known | where_expr(src["possible"]) if src["possible"] is not None else is_known
        day = _day(pl.col(contract.EVENT_DATE[tbl])).alias("day")
        known.append(rows.filter(is_known).select(PID, day))
        possible.append(rows.filter(may_be).select(PID, day))
    return pl.concat(known).unique(), pl.concat(possible).unique()


def _episode_count(days: pl.LazyFrame, gap: int, most: int, name: str) -> pl.LazyFrame:
    """Episodes of each patient's event days, counted up to `most`: the earliest day opens one; the
    earliest day at least `gap` days after an opening day opens the next (one join per step)."""
    opened = days.group_by(PID).agg(pl.col("day").min())
    count = opened.select(PID, pl.lit(1, pl.Int64).alias(name))
    for _ in range(1, most):
        opened = (opened.join(days.rename({"day": "next"}), on=PID)
                  .filter(pl.col("next") >= pl.col("day") + gap)
                  .group_by(PID).agg(pl.col("next").min().alias("day")))
        count = (count.join(opened.select(PID, pl.lit(1, pl.Int64).alias("_step")), on=PID, how="left")
                 .select(PID, (pl.col(name) + pl.col("_step").fill_null(0)).alias(name)))
    return count


@compiles("episodes")
def _episodes(node: Node, ctx: Ctx) -> pl.LazyFrame:
    known, possible = event_days(node, ctx)
    k, name = node["min_episodes"], node["as"]
    kn, pn = f"{name}_known", f"{name}_possible"
    got = on_patients(patients(ctx.tables), _episode_count(known, node["gap_days"], k, kn),
                      _episode_count(possible, node["gap_days"], k, pn))
    n_known, n_possible = pl.col(kn).fill_null(0), pl.col(pn).fill_null(0)
    status = (pl.when(n_known >= k).then(lit(PASS)).when(n_possible >= k).then(lit(UNKNOWN)).otherwise(lit(FAIL)))
    return got.select(PID, status.alias("status"), n_known.alias(kn), n_possible.alias(pn))


@compiles("events_during")
def _events_during(node: Node, ctx: Ctx) -> pl.LazyFrame:
    D, tbl, offset = ctx.D, node["table"], node["start_offset_days"]
    start, end = (pl.col(c) for c in contract.EPISODE_DATES[tbl])
    qualifying = ctx.tables[tbl].filter(where_expr(node["where"]) & start.is_not_null() & (start <= D))
    periods = (qualifying.select(PID, (_day(start) + offset).alias("lo"),
                                 pl.when(end.is_not_null() & (end <= D)).then(_day(end))
                                 .otherwise(_day(pl.lit(D))).alias("hi"))
               .filter(pl.col("hi") >= pl.col("lo")))
    known, possible = event_days(node, ctx)

    def during(days: pl.LazyFrame, name: str) -> pl.LazyFrame:
        return (days.join(periods, on=PID).filter(pl.col("day").is_between(pl.col("lo"), pl.col("hi")))
                .select(PID).unique().with_columns(pl.lit(True).alias(name)))

    frames = [during(known, "_known"), during(possible, "_possible")]
    doubt = pl.lit(False)
    if node["unknown_when"] is not None:
        # An episode ended for a reason that implies activity on it (e.g. inefficacy), after at least the
        # offset of treatment and within the window: the registry may lack the event itself.
        ended = (qualifying.filter(where_expr(node["unknown_when"]) & end.is_not_null()
                                   & end.is_between(days_before(D, node["window_days"]), D)
                                   & (_day(end) >= _day(start) + offset))
                 .select(PID).unique().with_columns(pl.lit(True).alias("_ended")))
        frames.append(ended)
        doubt = pl.col("_ended").fill_null(False)
    got = on_patients(patients(ctx.tables), *frames)
    status = (pl.when(pl.col("_known").fill_null(False)).then(lit(PASS))
              .when(pl.col("_possible").fill_null(False) | doubt).then(lit(UNKNOWN)).otherwise(lit(FAIL)))
    return got.select(PID, status.alias("status"))


@compiles("years_since_by_value")
def _years_since_by_value(node: Node, ctx: Ctx) -> pl.LazyFrame:
    D = ctx.D
    tbl = node["value_table"]
    worst = "max" if node["tie"] == "highest" else "min"
    value = latest(ctx.tables[tbl].filter(where_expr(node["where"])), contract.EVENT_DATE[tbl], node["value_column"],
                   D, node["lookback_days"], worst, "_v")
    above, below = node["max_years_above"], node["max_years_at_or_below"]
    lo, hi = min(above, below), max(above, below)

    y, yd = years_to_D(node["column"], D), years_to_D(node["fallback"], D)
    v = pl.col("_v")
    limit = pl.when(v > node["step"]).then(pl.lit(float(above))).otherwise(pl.lit(float(below)))
    status = (pl.when(y.is_not_null() & v.is_not_null()).then(pl.when(y < limit).then(lit(PASS)).otherwise(lit(FAIL)))
              # Without the value, only a duration below both limits passes and one above both fails.
              .when(y.is_not_null()).then(pl.when(y < lo).then(lit(PASS)).when(y >= hi).then(lit(FAIL))
                                          .otherwise(lit(UNKNOWN)))
              # The fallback date (diagnosis) follows the primary one: the duration is at least that long.
              .when(yd.is_not_null() & v.is_not_null()).then(pl.when(yd >= limit).then(lit(FAIL)).otherwise(lit(UNKNOWN)))
              .when(yd.is_not_null()).then(pl.when(yd >= hi).then(lit(FAIL)).otherwise(lit(UNKNOWN)))
              .otherwise(lit(UNKNOWN)))
    return on_patients(ctx.tables["patients"].select(PID, node["column"], *([node["fallback"]] if node["fallback"]
                                                                              else [])), value).select(
        PID, status.alias("status"), pl.coalesce(y, yd).alias(node["as"]), v.alias(node["value_as"]))


@compiles("recent_progression")
def _recent_progression(node: Node, ctx: Ctx) -> pl.LazyFrame:
    return recent_progression(ctx.tables, node.args, ctx.D, ctx.levels)
