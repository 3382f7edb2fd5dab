"""The quality frames: per table, the rows and derived columns its expectation suite checks.

Built with vectorised Polars (the Spark engine's twin is `pipeline.quality.spark`): derived
columns GE cannot compute itself (the EDSS range within 30 days before a visit, the
patient's death date beside each visit, recent-data flags), only the rows a check applies
to, and a seeded uniform sample of at most `SAMPLE_ROWS` rows for the expectations marked
`sample`. The suites themselves are files (`pipeline/quality/expectations/<table>.json`).
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources

import polars as pl

import schemas
from pipeline.criteria import Trial
from pipeline.inputs.registry import Registry

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
    return json.loads(resources.files("pipeline.quality.expectations").joinpath(f"{name}.json").read_text("utf-8"))


def load_suites() -> dict[str, dict]:
    """The table suites as stored: table name -> GE suite dict, in the contract's order (patients first)."""
    folder = resources.files("pipeline.quality.expectations")
    return {t: load_suite(t) for t in schemas.TABLES if folder.joinpath(f"{t}.json").is_file()}


def lookback(trial: Trial, measure: str) -> int:
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

    edss = recent(t["visits"].filter(pl.col("edss").is_not_null()), "visit_date", lookback(trial, "edss"))
    labs = recent(t["labs"].filter(pl.col("test").is_in(ORGAN_LABS)), "sample_date", lookback(trial, "organ_labs"))
    all_labs = labs.group_by(PID).agg(pl.col("test").n_unique().alias("n")).filter(pl.col("n") == len(ORGAN_LABS))
    lvef = recent(t["function_tests"].filter(pl.col("test") == "LVEF"), "test_date", lookback(trial, "lvef"))
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
