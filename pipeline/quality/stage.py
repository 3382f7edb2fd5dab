"""Data-quality findings on the accepted data, from great-expectations suites; they never stop a run.

pandera gates what makes a row unusable (quarantine). What is left is data that is
usable but doubtful, or missing where the criteria need it: a birth after the MS
onset, an EDSS that jumps 4 points in a fortnight, a visit after death, patients
without a recent EDSS or echocardiogram. Those are *findings* for the registry's
data managers, written to `summary.json` (`quality`) and the report, which renders
them itself; `quality/<suite>.json` of the run folder holds each suite's raw result.

The suites run natively by default (`pipeline.quality.checks`: one aggregate query per
frame, in the run's engine, without importing GE). `--quality ge` runs them with
great-expectations itself, the reference the native checks are held to by the tests;
its raw results are then GE's JSON, without its run ids and times, so two runs give
the same bytes. GE's Data Docs are not built: offline they rendered unstyled, and a
full disk made GE print pages of tracebacks while rendering them. GE's own logging is
silenced: a problem it meets is reported as a finding's error, never as text on stderr.

The expectation suites are files (`pipeline/quality/expectations/<table>.json`, GE's suite
format plus `meta.id`, `meta.finding` and `meta.sample`). What they check are
columns of a *quality frame* per table, built here with vectorised Polars:

- derived columns GE cannot compute itself (the EDSS range within 30 days before a
  visit, the patient's death date beside each visit, recent-data flags);
- only the rows a check applies to (a visit is checked against a death date only
  when there is one), so that counts stay exact while GE (pandas), when asked for,
  sees a fraction of a 20-million-row table;
- expectations marked `sample` (distributions: a mean EDSS) run on a uniform
  sample of at most `sample_rows` rows, drawn with a fixed seed.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import NamedTuple

import polars as pl

from pipeline.core.files import write_json
from pipeline.criteria import Trial
from pipeline.engines.spark.registry import SparkRegistry
from pipeline.inputs.registry import Registry
from pipeline.quality import ge
from pipeline.quality.checks import observed_figure as _observed
from pipeline.quality.frames import MEASURES, SAMPLE_ROWS, SEED, load_suite, load_suites, lookback, quality_frames


def settings(trial: Trial, as_of: dt.date, engine: str = "native") -> dict:
    """What the findings depend on beside the export itself (the cache key of a quality result).

    The quality engine is part of it because its raw results (`quality/<suite>.json`) differ in form.
    """
    return {"as_of": as_of.isoformat(), "lookbacks": {m: lookback(trial, m) for m in MEASURES},
            "sample_rows": SAMPLE_ROWS, "seed": SEED, "engine": engine}


QUALITY_ENGINES = ("native", "ge")


def run_quality(registry: Registry, trial: Trial, as_of: dt.date, results_dir: Path | None = None,
                engine: str = "native", checks: ShardedChecks | None = None) -> dict:
    """Check every present table's quality frame against its suite; return `summary.json` `quality`.

    `engine` is `native` (the suites' expectations as aggregate queries of the run's own
    engine, `pipeline.quality.checks`) or `ge` (great-expectations itself, on pandas or
    Spark frames: the reference, slower by GE's import and its frames). Both give the
    same findings (tests/test_quality_checks.py).

    Nothing here raises for bad data: a failed expectation is a finding; an
    expectation GE cannot evaluate is reported with its error. With `results_dir`, the raw
    result of each suite goes to `<results_dir>/<suite>.json`. `checks`: a sharded export's
    checks already gathered shard by shard (`ShardedChecks`); else its shards are read here.
    """
    if engine not in QUALITY_ENGINES:
        raise ValueError(f"unknown quality engine {engine!r}: one of {', '.join(QUALITY_ENGINES)}")
    t0 = time.perf_counter()
    # The Spark engine's tables stay in Spark: its frames are built there (pipeline/quality/spark.py).
    spark = isinstance(registry, SparkRegistry)
    if spark:
        from pipeline.quality.spark import quality_frames as spark_frames

        frames = spark_frames(registry, trial, as_of)
    elif registry.shards is not None:
        if engine != "native":
            raise ValueError("--quality ge needs the whole export in memory; this one is judged in shards: "
                             "use --quality native")
        if checks is None:
            checks = ShardedChecks(registry, trial, as_of)
            for tables in registry.parts():
                checks.add(tables)
        return checks.result(results_dir)
    else:
        frames = quality_frames(registry, trial, as_of, lazy=engine == "native")
    t_frames = time.perf_counter() - t0
    parts = _suite_parts(registry, frames)
    if results_dir is not None:
        results_dir.mkdir(exist_ok=True)
    if engine == "native":
        findings = _run_native(parts, frames, spark, results_dir)
    else:
        findings = ge.run_ge(parts, frames, spark, results_dir)
    return _stage_result(findings, t_frames, time.perf_counter() - t0)


def _stage_result(findings: list[dict], frames_seconds: float, total_seconds: float) -> dict:
    """What the quality stage returns (`summary.json` `quality`, with its timings to take out)."""
    return {
        "sample_rows": SAMPLE_ROWS,
        "n_findings": sum(1 for f in findings if not f["ok"]),
        "findings": findings,
        "seconds": {"frames": round(frames_seconds, 3), "total": round(total_seconds, 3)},
    }


class _Part(NamedTuple):
    """One suite part: a suite's expectations on all rows (`<table>`), or those marked `sample`
    (`<table>.sample`), with the name of the frame they check."""

    table: str
    name: str
    sampled: bool
    expectations: list[dict]
    suite: dict


def _suite_parts(registry: Registry, frames: dict) -> list[_Part]:
    """Every suite part of a present table that has a frame."""
    parts = []
    for table, suite in load_suites().items():
        if table not in registry.tables or table in registry.absent:
            continue
        for sampled in (False, True):
            exps = [e for e in suite["expectations"] if bool(e.get("meta", {}).get("sample")) == sampled]
            name = f"{table}.sample" if sampled else table
            if exps and name in frames:
                parts.append(_Part(table, name, sampled, exps, suite))
    return parts


def _run_native(parts, frames: dict, spark: bool, results_dir: Path | None) -> list[dict]:
    """The suites as aggregate queries: Polars collects them together (shared scans, in parallel);
    Spark runs one aggregate job per frame."""
    from pipeline.quality import checks as qc

    if spark:
        results = [qc.run_spark(frames[p.name], p.expectations) for p in parts]
    else:
        rows = pl.collect_all([qc.polars_query(frames[p.name], p.expectations) for p in parts])
        results = [qc.polars_results(row, p.expectations) for row, p in zip(rows, parts)]
    return _native_findings(parts, results, results_dir)


def _native_findings(parts, results: list, results_dir: Path | None) -> list[dict]:
    """The findings of each part's native results, its raw result written to `results_dir`."""
    findings = []
    for p, res in zip(parts, results):
        if results_dir is not None:
            write_json(native_raw_result(p.name, p.expectations, res), results_dir / f"{p.name}.json")
        findings += [_native_finding(p.table, exp, r, p.sampled) for exp, r in zip(p.expectations, res)]
    return findings


class ShardedChecks:
    """The native checks of a sharded export (pipeline/inputs/shards.py), gathered one shard at a time.

    A quality frame is a union of per-patient rows, so each shard's frames are its patients'
    rows, and the counts of a check (rows, rows considered, rows breaking it) are the sums
    of the shards' counts. The sampled checks run on one sample drawn across the shards,
    an equal share from each (the shards are ranges of patients of equal counts).

    `add` takes each shard's tables; a run gives it the shards the criteria have just been
    judged on (`engines.evaluate(..., each_shard=)`), so that each shard is read once. A
    failure is kept and reported by `result`, as any failure of the quality stage is: it
    never stops the criteria.
    """

    def __init__(self, registry: Registry, trial: Trial, as_of: dt.date):
        self.registry, self.trial, self.as_of = registry, trial, as_of
        self.share = -(-SAMPLE_ROWS // registry.n_shards)
        self.parts: list[_Part] = []
        self.counts: dict[str, list[pl.DataFrame]] = {}
        self.samples: dict[str, list[pl.DataFrame]] = {}
        self.seconds = 0.0
        self.error: Exception | None = None

    def add(self, tables: dict[str, pl.DataFrame]) -> None:
        from pipeline.quality import checks as qc

        if self.error is not None:
            return
        t0 = time.perf_counter()
        try:
            shard = Registry(tables, self.registry.inputs)
            frames = quality_frames(shard, self.trial, self.as_of, lazy=True, sample_rows=self.share)
            self.parts = self.parts or _suite_parts(self.registry, frames)
            plans = [frames[p.name] if p.sampled else qc.polars_query(frames[p.name], p.expectations)
                     for p in self.parts]
            for p, got in zip(self.parts, pl.collect_all(plans)):
                (self.samples if p.sampled else self.counts).setdefault(p.name, []).append(got)
        except Exception as exc:  # noqa: BLE001 - reported by `result`
            self.error = exc
        self.seconds += time.perf_counter() - t0

    def result(self, results_dir: Path | None) -> dict:
        from pipeline.quality import checks as qc

        if self.error is not None:
            raise self.error
        t0 = time.perf_counter()
        results = []
        for p in self.parts:
            if p.sampled:
                results.append(qc.run_polars(pl.concat(self.samples[p.name]), p.expectations))
                continue
            rows = pl.concat(self.counts[p.name])
            if any(c.endswith("observed") for c in rows.columns):  # a statistic does not add up over shards
                raise ValueError(f"suite {p.name}: an aggregate expectation outside the sampled part")
            results.append(qc.polars_results(rows.sum(), p.expectations))
        if results_dir is not None:
            results_dir.mkdir(exist_ok=True)
        findings = _native_findings(self.parts, results, results_dir)
        return _stage_result(findings, self.seconds, self.seconds + time.perf_counter() - t0)


def native_raw_result(name: str, exps: list[dict], results: list) -> dict:
    """A suite's raw result in the shape of GE's (suite, success, statistics, results), with the
    figures the native checks compute instead of GE's example lists."""
    ok = sum(1 for r in results if r.success)
    return {"suite_name": name, "success": ok == len(results), "engine": "msfeas native checks",
            "statistics": {"evaluated_expectations": len(results), "successful_expectations": ok,
                           "unsuccessful_expectations": len(results) - ok,
                           "success_percent": 100.0 * ok / len(results) if results else None},
            "results": [r.as_dict(e) for e, r in zip(exps, results)]}


def _native_finding(table: str, exp: dict, r, sampled: bool) -> dict:
    """A finding from a native result, with exactly the fields `_finding` takes from GE's."""
    meta = exp.get("meta", {})
    out = {"table": table, "id": meta.get("id", exp["type"]), "finding": meta.get("finding", exp["type"]),
           "expectation": exp["type"], "ok": bool(r.success), "sampled": sampled, "rows_checked": r.element_count}
    if r.unexpected is not None:
        out["count"] = int(r.unexpected)
    else:
        out["observed"] = _observed(r.observed)
    return out


def check_volume(now: dict[str, int], before: dict[str, int], max_drop: float) -> list[dict]:
    """The volume guard of `msfeas nightly`: what fell by more than `max_drop` since the previous run.

    One row per table (and the accepted patient count) with its row count and the
    least it may have (`previous * (1 - max_drop)`), checked by the `volume` suite,
    natively (`pipeline.quality.checks`, row by row). Returns the rows that broke it:
    table, rows, previous_rows, drop.
    """
    from pipeline.quality import checks as qc

    names = [t for t in before if before[t] > 0]
    if not names:
        return []
    frame = pl.DataFrame({"table": names, "rows": [now.get(t, 0) for t in names],
                          "previous_rows": [before[t] for t in names],
                          "min_rows": [before[t] * (1.0 - max_drop) for t in names]},
                         schema={"table": pl.String, "rows": pl.Int64, "previous_rows": pl.Int64,
                                 "min_rows": pl.Float64})
    broke = pl.lit(False)
    for exp in load_suite("volume")["expectations"]:
        broke = broke | qc.polars_rows(exp, frame.schema)[1]
    failed = frame.filter(broke)
    return [{"table": t, "rows": int(r), "previous_rows": int(p), "drop": 1 - r / p}
            for t, r, p in failed.select("table", "rows", "previous_rows").iter_rows()]
