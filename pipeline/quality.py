"""Data-quality findings on the accepted data, from great-expectations suites; they never stop a run.

pandera gates what makes a row unusable (quarantine). What is left is data that is
usable but doubtful, or missing where the criteria need it: a birth after the MS
onset, an EDSS that jumps 4 points in a fortnight, a visit after death, patients
without a recent EDSS or echocardiogram. Those are *findings* for the registry's
data managers, written to `summary.json` (`quality`) and the report, which renders
them itself; `quality/<suite>.json` of the run folder holds each suite's raw result.

The suites run natively by default (`pipeline.quality_checks`: one aggregate query per
frame, in the run's engine, without importing GE). `--quality ge` runs them with
great-expectations itself, the reference the native checks are held to by the tests;
its raw results are then GE's JSON, without its run ids and times, so two runs give
the same bytes. GE's Data Docs are not built: offline they rendered unstyled, and a
full disk made GE print pages of tracebacks while rendering them. GE's own logging is
silenced: a problem it meets is reported as a finding's error, never as text on stderr.

The expectation suites are files (`pipeline/expectations/<table>.json`, GE's suite
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
import json
import logging
import os
import sys
import time
import warnings
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import polars as pl

import schemas
from pipeline.registry import Registry
from pipeline.spark.registry import SparkRegistry
from pipeline.outputs import write_json
from pipeline.quality_checks import observed_figure as _observed
from pipeline.trial import Trial

PID = "patient_id"
SAMPLE_ROWS = 100_000
SEED = 20261124
WINDOW = "30d"
ORGAN_LABS = ("AST", "ALT", "TBIL", "CREAT")
# Look-backs used for completeness when no criterion of the trial reads that measurement.
DEFAULT_LOOKBACKS = {"edss": 365, "organ_labs": 90, "lvef": 365}
# Which nodes read each measurement (the criteria language's node types and fields).
MEASURES = {
    "edss": lambda n: n.type == "latest_value" and n["table"] == "visits" and n["column"] == "edss",
    "organ_labs": lambda n: n.type == "lab_uln",
    "lvef": lambda n: n.type == "latest_value" and n["where"].get("test", {}).get("equals") == "LVEF",
}


def load_suite(name: str) -> dict:
    return json.loads(resources.files("pipeline.expectations").joinpath(f"{name}.json").read_text("utf-8"))


def load_suites() -> dict[str, dict]:
    """The table suites as stored: table name -> GE suite dict, in the contract's order (patients first)."""
    folder = resources.files("pipeline.expectations")
    return {t: load_suite(t) for t in schemas.TABLES if folder.joinpath(f"{t}.json").is_file()}


def _lookback(trial: Trial, measure: str) -> int:
    """The look-back of the first criterion node that reads `measure`, else the default."""
    for c in trial.criteria:
        for node in c.node.walk():
            if MEASURES[measure](node):
                return int(node["lookback_days"])
    return DEFAULT_LOOKBACKS[measure]


def visit_spreads(visits: pl.DataFrame) -> pl.DataFrame:
    """Per (patient, visit date) with another visit within 30 days: the EDSS and weight spread over
    the patient's visits dated in [date - 30 days, date].

    `edss_jump_30d` is the EDSS range (max - min) in that window, `weight_change_pct_30d`
    the weight range in % of the window's lowest weight; null when the window holds no
    other value. Same-day visits are in each other's windows, so two different EDSS on
    one day count.

    Only visits with a neighbour within 30 days can have a spread, and their windows
    hold only such visits; so the rolling window runs on that (small) subset, found
    with one shift over the sorted table: linear, not a window per visit.
    """
    pid, day = pl.col(PID), pl.col("visit_date")
    v = visits.select(PID, "visit_date", "edss", "weight_kg").sort(PID, "visit_date")
    near_prev = (pid == pid.shift(1)) & ((day - day.shift(1)).dt.total_days() <= 30)
    near_next = (pid == pid.shift(-1)) & ((day.shift(-1) - day).dt.total_days() <= 30)
    # Same-day visits first become one row per day, so that the window rows are keyed
    # (patient, day) and join back unambiguously.
    days = (v.filter((near_prev | near_next).fill_null(False))
            .group_by(PID, "visit_date").agg(
                pl.col("edss").max().alias("e_hi"), pl.col("edss").min().alias("e_lo"), pl.col("edss").count().alias("e_n"),
                pl.col("weight_kg").max().alias("w_hi"), pl.col("weight_kg").min().alias("w_lo"),
                pl.col("weight_kg").count().alias("w_n"))
            .sort(PID, "visit_date"))
    win = days.rolling(index_column="visit_date", period=WINDOW, closed="both", group_by=PID).agg(
        pl.col("e_hi").max().alias("we_hi"), pl.col("e_lo").min().alias("we_lo"), pl.col("e_n").sum().alias("we_n"),
        pl.col("w_hi").max().alias("ww_hi"), pl.col("w_lo").min().alias("ww_lo"), pl.col("w_n").sum().alias("ww_n"))
    return (days.join(win, on=[PID, "visit_date"], how="left").select(
        PID, "visit_date",
        pl.when((pl.col("e_n") > 0) & (pl.col("we_n") > 1)).then(pl.col("we_hi") - pl.col("we_lo"))
        .alias("edss_jump_30d"),
        pl.when((pl.col("w_n") > 0) & (pl.col("ww_n") > 1))
        .then((pl.col("ww_hi") - pl.col("ww_lo")) * 100.0 / pl.col("ww_lo")).alias("weight_change_pct_30d"))
        .filter(pl.col("edss_jump_30d").is_not_null() | pl.col("weight_change_pct_30d").is_not_null()))


def quality_frames(registry: Registry, trial: Trial, as_of: dt.date, lazy: bool = False,
                   sample_rows: int = SAMPLE_ROWS) -> dict[str, pl.DataFrame] | dict[str, pl.LazyFrame]:
    """Table name -> the frame its suite checks. Vectorised, linear in rows (plus sorts), and
    built as lazy plans collected together, so that the engine shares scans and runs them in parallel.

    With `lazy`, the plans themselves: the native checks aggregate them without ever holding
    the frames.
    """
    t = {name: frame.lazy() for name, frame in registry.tables.items()}
    pat = t["patients"]
    life = pat.select(PID, "birth_date", "death_date", pl.col("onset_date").alias("ms_onset_date"),
                      "diagnosis_date")
    dead = life.filter(pl.col("death_date").is_not_null()).select(PID, "death_date")

    def recent(frame: pl.LazyFrame, date_col: str, days: int) -> pl.LazyFrame:
        lo = as_of - dt.timedelta(days=days)
        return frame.filter(pl.col(date_col).is_between(lo, as_of))

    def has(frame: pl.LazyFrame, name: str) -> pl.LazyFrame:
        return frame.select(PID).unique().with_columns(pl.lit(True).alias(name))

    edss = recent(t["visits"].filter(pl.col("edss").is_not_null()), "visit_date", _lookback(trial, "edss"))
    labs = recent(t["labs"].filter(pl.col("test").is_in(ORGAN_LABS)), "sample_date", _lookback(trial, "organ_labs"))
    all_labs = labs.group_by(PID).agg(pl.col("test").n_unique().alias("n")).filter(pl.col("n") == len(ORGAN_LABS))
    lvef = recent(t["function_tests"].filter(pl.col("test") == "LVEF"), "test_date", _lookback(trial, "lvef"))
    flags = {"has_visit": t["visits"], "has_treatment": t["treatments"], "has_recent_edss": edss,
             "has_recent_labs": all_labs, "has_recent_lvef": lvef}
    patients = pat.select(PID, "birth_date", "onset_date", "diagnosis_date", "death_date")
    for name, frame in flags.items():
        patients = patients.join(has(frame, name), on=PID, how="left", maintain_order="left")
    plans = {"patients": patients.with_columns(pl.col(list(flags)).fill_null(False))}

    visits = t["visits"]
    after = visits.join(dead, on=PID).select(PID, "visit_date", "death_date").unique()
    # Eager on purpose: its sorts and rolling window ran twice as fast eagerly as in a lazy plan.
    plans["visits"] = (visit_spreads(registry.tables["visits"]).lazy().join(after, on=[PID, "visit_date"], how="full", coalesce=True)
                       .select(PID, "visit_date", "death_date", "edss_jump_30d", "weight_change_pct_30d")
                       .sort(PID, "visit_date"))
    values = registry.tables["visits"].select("edss", "weight_kg")  # in memory already: sampled eagerly
    plans["visits.sample"] = values.sample(min(sample_rows, values.height), seed=SEED).lazy()
    plans["relapses"] = t["relapses"].join(life, on=PID, how="left", maintain_order="left").filter(
        pl.col("ms_onset_date").is_not_null() | pl.col("death_date").is_not_null()).select(
        PID, "onset_date", "ms_onset_date", "death_date")
    # The stop reason as written: outside the list on an ended episode (read as `other`), or given
    # on an ongoing one (ignored); each column is null where its check does not apply.
    given = pl.col("stop_reason_given")
    ended = pl.col("end_date").is_not_null()
    plans["treatments"] = t["treatments"].join(life, on=PID, how="left", maintain_order="left").filter(
        pl.col("birth_date").is_not_null() | pl.col("death_date").is_not_null() | given.is_not_null()).select(
        PID, "drug", "start_date", "birth_date", "death_date",
        pl.when(ended).then(given.str.to_lowercase()).alias("stop_reason_ended"),
        pl.when(~ended).then(given).alias("stop_reason_ongoing"))
    plans["labs"] = t["labs"].join(dead, on=PID, maintain_order="left").select(PID, "sample_date", "death_date")
    plans["function_tests"] = t["function_tests"].join(dead, on=PID, maintain_order="left").select(PID, "test_date", "death_date")
    plans["conditions"] = t["conditions"].filter(pl.col("onset_date").is_not_null()).join(
        life, on=PID, how="left", maintain_order="left").filter(pl.col("birth_date").is_not_null()).select(PID, "onset_date", "birth_date")
    plans["mri"] = mri_frame(t["mri"], life)
    plans["mri.sample"] = (registry.tables["mri"].sample(min(sample_rows, registry.tables["mri"].height), seed=SEED)
                           .select((pl.col("gd_lesions").is_null() & pl.col("new_t2_lesions").is_null())
                                   .cast(pl.Float64).alias("counts_empty")).lazy())
    if lazy:
        return plans
    return dict(zip(plans, pl.collect_all(list(plans.values()))))


def mri_frame(mri: pl.LazyFrame, life: pl.LazyFrame) -> pl.LazyFrame:
    """Scans a check applies to: of patients with a birth or death date (dated before birth, after
    death), and first scans with a new-T2 count (`first_scan_new_t2`: a patient's earliest scan
    date has nothing in the export to compare with; null on every other row)."""
    # A per-patient aggregate joined with the life dates, then one join: four times faster than a window.
    first = mri.group_by(PID).agg(pl.col("scan_date").min().alias("first_scan"))
    per_patient = life.select(PID, "birth_date", "death_date").join(first, on=PID)
    return (mri.join(per_patient, on=PID, how="left", maintain_order="left")
            .with_columns(pl.when(pl.col("scan_date") == pl.col("first_scan")).then(pl.col("new_t2_lesions"))
                          .alias("first_scan_new_t2"))
            .filter(pl.col("birth_date").is_not_null() | pl.col("death_date").is_not_null()
                    | pl.col("first_scan_new_t2").is_not_null())
            .select(PID, "scan_date", "birth_date", "death_date", "first_scan_new_t2"))


def _columns_used(expectations: list[dict], columns: list[str]) -> list[str]:
    """The frame's columns that the expectations name, in frame order.

    GE converts, and fingerprints by hashing, every column of the frame it is given;
    ids and drug names that no expectation reads would only cost time (about a
    second at a million patients).
    """
    named = {v for e in expectations for k, v in e.get("kwargs", {}).items() if k.startswith("column")}
    return [c for c in columns if c in named]


def _to_pandas(frame: pl.DataFrame):
    """pandas for GE: dates as datetime64 (GE compares those), booleans kept."""
    return frame.with_columns(pl.col(pl.Date).cast(pl.Datetime("ms"))).to_pandas()


def _silence_ge() -> None:
    """GE logs its own errors (with tracebacks) to stderr when nothing else handles them; a run
    reports GE's problems itself (a finding's `error`, the quality stage's error), in one line."""
    gx_log = logging.getLogger("great_expectations")
    if not any(isinstance(h, logging.NullHandler) for h in gx_log.handlers):
        gx_log.addHandler(logging.NullHandler())
    gx_log.propagate = False


def _no_doctest_exit() -> None:
    """Keep pyspark from ending the process when GE imports it.

    With pyspark installed, GE imports `pyspark.sql.connect`, which takes a process whose
    `__main__` has neither a spec nor a file (`python -c`, pytest-xdist's workers) for a
    doctest run and calls `sys.exit(0)` when its optional gRPC packages are missing: a
    silent exit with status 0 in the middle of a run. Such a `__main__` is given a file name.
    """
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None and not hasattr(main, "__file__"):
        main.__file__ = "<msfeas>"


def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no calls home from a hospital network
    _silence_ge()
    _no_doctest_exit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

        # In memory, and no temporary docs site of GE's own (it would leave a folder in /tmp each run).
        config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
        ctx = gx.get_context(mode="ephemeral", project_config=config)
    ctx.variables.progress_bars = {"globally": False}  # quiet under cron
    return gx, ctx


def raw_result(result) -> dict:
    """GE's validation result as JSON, minus what differs between two runs of the same data
    (run and validation ids, times, batch markers, the expectations' random ids)."""
    d = result.to_json_dict()
    for r in d.get("results", []):
        r.get("expectation_config", {}).pop("id", None)
    return {"suite_name": d.get("suite_name"), "success": d.get("success"), "statistics": d.get("statistics"),
            "great_expectations_version": (d.get("meta") or {}).get("great_expectations_version"),
            "results": d.get("results", [])}


def _finding(table: str, exp: dict, result, sampled: bool, rows: int) -> dict:
    r = result.result or {}
    meta = exp.get("meta", {})
    out = {
        "table": table, "id": meta.get("id", exp["type"]), "finding": meta.get("finding", exp["type"]),
        "expectation": exp["type"], "ok": bool(result.success), "sampled": sampled, "rows_checked": rows,
    }
    if "unexpected_count" in r:
        out["count"] = int(r["unexpected_count"])
    if "observed_value" in r:
        out["observed"] = _observed(r["observed_value"])
    if result.exception_info and result.exception_info.get("raised_exception"):
        out["ok"] = False
        out["error"] = str(result.exception_info.get("exception_message"))
    return out


def _validate(gx, ctx, name: str, expectations: list[dict], frame, result_format, meta: dict | None = None,
              spark: bool = False):
    """Run `expectations` as the GE suite `name` on a pandas (or Spark) `frame`; the validation result."""
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=[dict(e) for e in expectations],
                                               meta=meta or {}))
    source = ctx.data_sources.add_spark(name) if spark else ctx.data_sources.add_pandas(name)
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("accepted rows")
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vd.run(batch_parameters={"dataframe": frame}, result_format=result_format)


def settings(trial: Trial, as_of: dt.date, engine: str = "native") -> dict:
    """What the findings depend on beside the export itself (the cache key of a quality result).

    The quality engine is part of it because its raw results (`quality/<suite>.json`) differ in form.
    """
    return {"as_of": as_of.isoformat(), "lookbacks": {m: _lookback(trial, m) for m in MEASURES},
            "sample_rows": SAMPLE_ROWS, "seed": SEED, "engine": engine}


QUALITY_ENGINES = ("native", "ge")


def run_quality(registry: Registry, trial: Trial, as_of: dt.date, results_dir: Path | None = None,
                engine: str = "native", checks: ShardedChecks | None = None) -> dict:
    """Check every present table's quality frame against its suite; return `summary.json` `quality`.

    `engine` is `native` (the suites' expectations as aggregate queries of the run's own
    engine, `pipeline.quality_checks`) or `ge` (great-expectations itself, on pandas or
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
    # The Spark engine's tables stay in Spark: its frames are built there (pipeline/spark/quality.py).
    spark = isinstance(registry, SparkRegistry)
    if spark:
        from pipeline.spark.quality import quality_frames as spark_frames

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
        findings = _run_ge(parts, frames, spark, results_dir)
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
    from pipeline import quality_checks as qc

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
    """The native checks of a sharded export (pipeline/shards.py), gathered one shard at a time.

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
        from pipeline import quality_checks as qc

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
        from pipeline import quality_checks as qc

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


def _run_ge(parts, frames: dict, spark: bool, results_dir: Path | None) -> list[dict]:
    """The suites run by great-expectations on pandas frames (or its Spark execution engine)."""
    gx, ctx = _context()
    findings = []
    for table, name, sampled, exps, suite in parts:
        frame = frames[name]
        used = frame.select(_columns_used(exps, frame.columns))
        if spark:  # GE computes each metric as its own Spark job: the frame is built once, not per metric
            used = used.cache()
        rows = used.count() if spark else frame.height
        result = _validate(gx, ctx, name, exps, used if spark else _to_pandas(used), "BASIC", suite.get("meta"),
                           spark)
        if results_dir is not None:
            write_json(raw_result(result), results_dir / f"{name}.json")
        by_id = {e.get("meta", {}).get("id"): e for e in exps}
        for res in result.results:
            exp = by_id.get((res.expectation_config.meta or {}).get("id"), {"type": res.expectation_config.type})
            findings.append(_finding(table, exp, res, sampled, rows))
        if spark:
            used.unpersist()
    return findings


def check_volume(now: dict[str, int], before: dict[str, int], max_drop: float) -> list[dict]:
    """The volume guard of `msfeas nightly`: what fell by more than `max_drop` since the previous run.

    One row per table (and the accepted patient count) with its row count and the
    least it may have (`previous * (1 - max_drop)`), checked by the `volume` suite,
    natively (`pipeline.quality_checks`, row by row). Returns the rows that broke it:
    table, rows, previous_rows, drop.
    """
    from pipeline import quality_checks as qc

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
