"""Data-quality findings with great-expectations, on the accepted data; they never stop a run.

pandera gates what makes a row unusable (quarantine). What is left is data that is
usable but doubtful, or missing where the criteria need it: a birth after the MS
onset, an EDSS that jumps 4 points in a fortnight, a visit after death, patients
without a recent EDSS or echocardiogram. Those are *findings* for the registry's
data managers, written to `summary.json` (`quality`) and the report, which renders
them itself; `quality/<suite>.json` of the run folder holds GE's raw validation
results (GE's JSON, without its run ids and times, so two runs give the same bytes).
GE's Data Docs are not built: offline they rendered unstyled, and a full disk made
GE print pages of tracebacks while rendering them. GE's own logging is silenced: a
problem it meets is reported as a finding's error, never as text on stderr.

The expectation suites are files (`pipeline/expectations/<table>.json`, GE's suite
format plus `meta.id`, `meta.finding` and `meta.sample`). What they check are
columns of a *quality frame* per table, built here with vectorised Polars:

- derived columns GE cannot compute itself (the EDSS range within 30 days before a
  visit, the patient's death date beside each visit, recent-data flags);
- only the rows a check applies to (a visit is checked against a death date only
  when there is one), so that counts stay exact while GE (pandas) sees a fraction
  of a 20-million-row table;
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

import polars as pl

import schemas
from pipeline.registry import Registry
from pipeline.spark.registry import SparkRegistry
from pipeline.outputs import write_json
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


def quality_frames(registry: Registry, trial: Trial, as_of: dt.date) -> dict[str, pl.DataFrame]:
    """Table name -> the frame its suite checks. Vectorised, linear in rows (plus sorts), and
    built as lazy plans collected together, so that the engine shares scans and runs them in parallel.
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
    plans["visits.sample"] = values.sample(min(SAMPLE_ROWS, values.height), seed=SEED).lazy()
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
    plans["mri.sample"] = (registry.tables["mri"].sample(min(SAMPLE_ROWS, registry.tables["mri"].height), seed=SEED)
                           .select((pl.col("gd_lesions").is_null() & pl.col("new_t2_lesions").is_null())
                                   .cast(pl.Float64).alias("counts_empty")).lazy())
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


def _observed(value):
    """An observed statistic as reported: floats to 10 significant digits.

    A mean summed in another order (pandas here, Spark's partial sums there) differs in the
    last bits; ten digits are far more than a finding needs and the same on every engine.
    """
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return float(f"{float(value):.10g}")
    return value


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


def settings(trial: Trial, as_of: dt.date) -> dict:
    """What the findings depend on beside the export itself (the cache key of a quality result)."""
    return {"as_of": as_of.isoformat(), "lookbacks": {m: _lookback(trial, m) for m in MEASURES},
            "sample_rows": SAMPLE_ROWS, "seed": SEED}


def run_quality(registry: Registry, trial: Trial, as_of: dt.date, results_dir: Path | None = None) -> dict:
    """Validate every present table's quality frame against its suite; return `summary.json` `quality`.

    Nothing here raises for bad data: a failed expectation is a finding; an
    expectation GE cannot evaluate is reported with its error. With `results_dir`, GE's
    raw result of each suite goes to `<results_dir>/<suite>.json`.
    """
    t0 = time.perf_counter()
    # The Spark engine's tables stay in Spark: its frames are built there and GE validates them
    # with its Spark execution engine (pipeline/spark/quality.py).
    spark = isinstance(registry, SparkRegistry)
    if spark:
        from pipeline.spark.quality import quality_frames as spark_frames

        frames = spark_frames(registry, trial, as_of)
    else:
        frames = quality_frames(registry, trial, as_of)
    t_frames = time.perf_counter() - t0
    gx, ctx = _context()
    if results_dir is not None:
        results_dir.mkdir(exist_ok=True)
    findings = []
    for table, suite in load_suites().items():
        if table not in registry.tables or table in registry.absent:
            continue
        for sampled in (False, True):
            exps = [e for e in suite["expectations"] if bool(e.get("meta", {}).get("sample")) == sampled]
            name = f"{table}.sample" if sampled else table
            if not exps or name not in frames:
                continue
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
    return {
        "sample_rows": SAMPLE_ROWS,
        "n_findings": sum(1 for f in findings if not f["ok"]),
        "findings": findings,
        "seconds": {"frames": round(t_frames, 3), "total": round(time.perf_counter() - t0, 3)},
    }


def check_volume(now: dict[str, int], before: dict[str, int], max_drop: float) -> list[dict]:
    """The volume guard of `msfeas nightly`: what fell by more than `max_drop` since the previous run.

    One row per table (and the accepted patient count) with its row count and the
    least it may have (`previous * (1 - max_drop)`), checked by the `volume` suite.
    Returns the rows that broke it: table, rows, previous_rows, drop.
    """
    import pandas as pd

    names = [t for t in before if before[t] > 0]
    if not names:
        return []
    frame = pd.DataFrame({"table": names, "rows": [now.get(t, 0) for t in names],
                          "previous_rows": [before[t] for t in names],
                          "min_rows": [before[t] * (1.0 - max_drop) for t in names]})
    gx, ctx = _context()
    suite = load_suite("volume")
    result = _validate(gx, ctx, "volume", suite["expectations"], frame,
                       {"result_format": "COMPLETE", "unexpected_index_column_names": ["table"]}, suite.get("meta"))
    failed = set()
    for res in result.results:
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise RuntimeError(f"volume check could not run: {res.exception_info.get('exception_message')}")
        for item in (res.result or {}).get("unexpected_index_list") or []:
            failed.add(item["table"])
    return [{"table": t, "rows": int(r), "previous_rows": int(p), "drop": 1 - r / p}
            for t, r, p in zip(frame["table"], frame["rows"], frame["previous_rows"]) if t in failed]
