"""The engines and what they share: combining criterion results into the evaluation.

Each engine (Polars, DuckDB, Spark) returns, per criterion, `patient_id, status` and evidence columns. What
follows is the same for both and lives here once: criteria that read an absent table
become `unknown`, the columns get their output names and types, and each patient's
overall status is derived.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

import polars as pl

from pipeline.criteria import Trial
from pipeline.inputs.registry import Registry

# The engines over a Polars `Registry` (the tables in the driver's memory); "spark" evaluates a
# `SparkRegistry` (pipeline/engines/spark/registry.py), whose tables stay in Spark.
ENGINES = ("polars", "duckdb")
ALL_ENGINES = (*ENGINES, "spark")
PID = "patient_id"


def _normalise(frame: pl.DataFrame) -> pl.DataFrame:
    """One dtype per family, so that both engines' frames compare (and write) identically."""
    casts = []
    for name, dtype in frame.schema.items():
        if dtype.is_integer():
            casts.append(pl.col(name).cast(pl.Int64))
        elif dtype.is_float() or dtype.is_decimal():
            casts.append(pl.col(name).cast(pl.Float64))
        elif dtype == pl.Date:
            casts.append(pl.col(name))
        elif dtype == pl.Null:
            casts.append(pl.col(name).cast(pl.Utf8))
        else:
            casts.append(pl.col(name).cast(pl.Utf8))
    return frame.select(casts)


def _attach(base: pl.DataFrame, res: pl.DataFrame) -> pl.DataFrame:
    """Left-join a criterion's result (one row per patient) to `base` by patient_id.

    Most results come back in the patients' own order; for those, the join (a hash of
    a million strings, 18 times) is replaced by placing the columns side by side, after
    checking that the ids match row for row. Any other order takes the join.
    """
    if res.height == base.height and res[PID].equals(base[PID]):
        return base.hstack(res.drop(PID))
    return base.join(res, on=PID, how="left", maintain_order="left")


def overall_status(criteria_ids: list[str]) -> pl.Expr:
    """ineligible if any criterion fails; eligible if all but `screening` pass; else possible."""
    cols = [pl.col(c) for c in criteria_ids]
    any_fail = pl.any_horizontal(*[c == "fail" for c in cols])
    all_pass = pl.all_horizontal(*[c.is_in(["pass", "screening"]) for c in cols])
    return (pl.when(any_fail).then(pl.lit("ineligible")).when(all_pass).then(pl.lit("eligible"))
            .otherwise(pl.lit("possible")))


def _patients(patients) -> pl.DataFrame:
    """patient_id, site_id of every patient, in the patients table's order (from Spark through Arrow)."""
    if isinstance(patients, pl.DataFrame):
        return patients.select(PID, "site_id")
    from pipeline.engines.spark.frames import to_polars

    return to_polars(patients.select(PID, "site_id"))


@dataclass
class Known:
    """Criteria judged by an earlier run on the same validated export (pipeline/ops/results_cache.py).

    `patients`: the patient ids of that run's evaluation, in its order; `results`: criterion id ->
    its status (`status`) and evidence (named as in the engines' results), one row per patient in
    that order. Used only when the ids match this evaluation's, row for row.
    """

    patients: pl.Series
    results: dict[str, pl.DataFrame]


def evaluate(registry: Registry, trial: Trial, as_of: dt.date, engine: str = "polars",
             each_shard: Callable[[dict[str, pl.DataFrame]], None] | None = None,
             known: Known | None = None) -> pl.DataFrame:
    """The evaluation matrix: patient_id, site_id, status, a column per criterion, then evidence.

    Sorted by patient_id in code-point order. Evidence columns are named
    `<criterion id>__<evidence>`. A sharded export (pipeline/inputs/shards.py) is judged shard by
    shard; its shards are ranges of patient ids, so their sorted evaluations, one after
    the other, are the whole one. `each_shard`: also given each shard's tables once judged
    (the quality checks, so that a shard is read once). `known`: criteria an earlier run
    judged on this export (a what-if re-run), taken as they are; only the others are judged.
    """
    intervals = getattr(registry, "birth_intervals", None)
    if intervals is not None and intervals.height and engine != "spark":
        return _birth_intervals(registry, trial, as_of, engine, each_shard, intervals)
    if engine == "polars":
        from pipeline.engines import polars_engine as eng
    elif engine == "duckdb":
        from pipeline.engines import duckdb_engine as eng
    elif engine == "spark":  # a SparkRegistry: its tables are pyspark DataFrames
        from pipeline.engines import spark_engine as eng

        if isinstance(registry.tables["patients"], pl.DataFrame):
            raise TypeError("engine 'spark' evaluates a SparkRegistry (tables in Spark), not a Polars Registry")
    else:
        raise ValueError(f"unknown engine {engine!r}")
    absent = set(registry.absent)
    done = known.results if known is not None else {}
    todo = [c for c in trial.criteria if c.id not in done]
    evidence: dict[str, list[str]] = {}
    if todo or not done:
        frame = _judged(eng, registry, todo, as_of, absent, each_shard, evidence, few=bool(done))
    else:
        frame = _patients(registry.tables["patients"]).sort(PID)
        if each_shard is not None:
            for tables in registry.parts():
                each_shard(tables)
    if done and not known.patients.equals(frame[PID]):  # another export's results: judged here after all
        rest = [c for c in trial.criteria if c.id in done]
        frame = frame.hstack(_judged(eng, registry, rest, as_of, absent, None, evidence).drop(PID, "site_id"))
        done = {}
    for c in trial.criteria:
        if c.id in done:
            names = {n: f"{c.id}__{n}" for n in done[c.id].columns if n != "status"}
            frame = frame.hstack(done[c.id].rename({"status": c.id, **names}))
            evidence[c.id] = list(names.values())
    ids = trial.ids
    return (frame.with_columns(overall_status(ids).alias("status"))
            .select(PID, "site_id", "status", *ids, *[n for c in trial.criteria for n in evidence[c.id]]))


def _birth_intervals(registry: Registry, trial: Trial, as_of: dt.date, engine: str,
                     each_shard: Callable[[dict[str, pl.DataFrame]], None] | None,
                     intervals: pl.DataFrame) -> pl.DataFrame:
    """The evaluation when some birth dates are known only as an interval (docs/omop.md, "Birth dates").

    Age in completed years at D is monotone in the birth date, so over an interval of one year (or one
    month) it takes only the values of its two ends; creatinine clearance is a function of that age.
    Each criterion is judged with the earliest and with the latest birth date: the same status at both
    ends is the status of every date of the interval (pass if every date passes, fail if every date
    fails); different statuses give `unknown`, without evidence. Patients with an exact birth date are
    judged once as always (both ends are their date).
    """
    lo = evaluate(birth_end(registry, "birth_earliest"), trial, as_of, engine, each_shard=each_shard)
    hi = evaluate(birth_end(registry, "birth_latest"), trial, as_of, engine)
    return combine_ends(lo, hi, trial)


def birth_end(registry: Registry, end: str) -> Registry:
    """The registry with each interval birth date at one end (`birth_earliest` or `birth_latest`)."""
    from dataclasses import replace

    patients = registry.tables["patients"]
    joined = patients.join(registry.birth_intervals.select(PID, pl.col(end).alias("_b")), on=PID, how="left",
                           maintain_order="left")
    patients = joined.with_columns(pl.coalesce("birth_date", "_b").alias("birth_date")).select(patients.columns)
    return replace(registry, tables={**registry.tables, "patients": patients}, birth_intervals=None)


def combine_ends(lo: pl.DataFrame, hi: pl.DataFrame, trial: Trial) -> pl.DataFrame:
    """Each criterion's status where both ends agree, else `unknown` (evidence then empty); overall status anew."""
    same = {c: lo[c].eq_missing(hi[c]) for c in trial.ids}
    cols = []
    for c in trial.criteria:
        cols.append(pl.when(same[c.id]).then(pl.col(c.id)).otherwise(pl.lit("unknown")).alias(c.id))
        cols += [pl.when(same[c.id]).then(pl.col(n)).alias(n) for n in lo.columns if n.startswith(f"{c.id}__")]
    out = lo.with_columns(cols)
    return out.with_columns(overall_status(trial.ids).alias("status")).select(lo.columns)


def _judged(eng, registry: Registry, criteria: list, as_of: dt.date, absent: set[str],
            each_shard: Callable[[dict[str, pl.DataFrame]], None] | None,
            evidence: dict[str, list[str]], few: bool = False) -> pl.DataFrame:
    """patient_id, site_id, then each of `criteria`'s status and evidence, sorted by patient_id;
    `evidence` gets each criterion's evidence columns. `few`: the few criteria a what-if re-run
    changed, each of which reads a shard's tables as lazy scans (only the columns it uses, half
    the time of reading the tables whole for the EDSS range on a million patients)."""
    if registry.shards is None:
        return _evaluation(eng, registry.tables, criteria, as_of, absent, evidence)
    # The quality checks gathered on the way (`each_shard`) read every table whole; criteria only their own.
    only = (None if each_shard is not None else {"patients"} if few
            else {"patients", *(t for c in criteria for t in c.tables)})
    parts = []
    for tables in registry.parts(only):
        parts.append(_evaluation(eng, tables, criteria, as_of, absent, evidence))
        if each_shard is not None:
            each_shard(tables)
    whole = pl.concat(parts, rechunk=True)
    return whole if whole[PID].is_sorted() else whole.sort(PID)  # in order already: checked, not assumed


def _evaluation(eng, tables: dict, criteria: list, as_of: dt.date, absent: set[str],
                evidence: dict[str, list[str]]) -> pl.DataFrame:
    results = eng.evaluate(tables, criteria, as_of) if criteria else {}
    base = _patients(tables["patients"])
    for c in criteria:
        res = _normalise(results[c.id])
        missing = sorted(set(c.tables) & absent)
        ev_cols = [n for n in res.columns if n not in (PID, "status")]
        if missing:  # an absent table is not an empty one: nothing can be judged
            res = res.with_columns(pl.lit("unknown").alias("status"),
                                   *[pl.lit(None, res.schema[n]).alias(n) for n in ev_cols])
        evidence[c.id] = [f"{c.id}__{n}" for n in ev_cols]
        base = _attach(base, res.rename({"status": c.id, **dict(zip(ev_cols, evidence[c.id]))}))
    return base.sort(PID)
