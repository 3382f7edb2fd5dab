"""The quality frames of `pipeline.quality.frames`, built in Spark from a `SparkRegistry`.

The findings are the same suites run on the same frames; only where the frames are built
differs. With the Spark engine the tables never leave Spark, so the frames are Spark
DataFrames, checked by one aggregate Spark SQL job per suite (`pipeline.quality.checks`),
or with `--quality ge` by GE's Spark execution engine (`pipeline.quality.stage.run_quality`
picks). Each step below mirrors its Polars
twin in `pipeline.quality.frames.quality_frames` line for line; `tests/test_spark_quality.py`
checks that both give the same rows and the same findings.

One difference, by nature: a table of more than `SAMPLE_ROWS` rows is sampled by Spark
(a seeded random order, then the first `SAMPLE_ROWS` rows), not by Polars, so a sampled
finding's observed mean can differ between engines on such a table. Up to that size the
sample is the whole table on both.
"""

from __future__ import annotations

import datetime as dt

from pipeline.criteria import Trial
from pipeline.quality.frames import ORGAN_LABS, SAMPLE_ROWS, SEED, lookback

PID = "patient_id"
WINDOW_DAYS = 30  # pipeline.quality.frames.WINDOW


def quality_frames(registry, trial: Trial, as_of: dt.date) -> dict[str, object]:
    """Table name -> the Spark DataFrame its suite checks (see `pipeline.quality.frames.quality_frames`)."""
    from pyspark.sql import functions as F

    t = registry.tables
    pat = t["patients"]
    life = pat.select(PID, "birth_date", "death_date", F.col("onset_date").alias("ms_onset_date"), "diagnosis_date")
    dead = life.where(F.col("death_date").isNotNull()).select(PID, "death_date")

    def recent(frame, date_col: str, days: int):
        lo = as_of - dt.timedelta(days=days)
        return frame.where(F.col(date_col).between(F.lit(lo), F.lit(as_of)))

    edss = recent(t["visits"].where(F.col("edss").isNotNull()), "visit_date", lookback(trial, "edss"))
    labs = recent(t["labs"].where(F.col("test").isin(*ORGAN_LABS)), "sample_date", lookback(trial, "organ_labs"))
    all_labs = (labs.groupBy(PID).agg(F.countDistinct("test").alias("n"))
                .where(F.col("n") == len(ORGAN_LABS)))
    lvef = recent(t["function_tests"].where(F.col("test") == "LVEF"), "test_date", lookback(trial, "lvef"))
    flags = {"has_visit": t["visits"], "has_treatment": t["treatments"], "has_recent_edss": edss,
             "has_recent_labs": all_labs, "has_recent_lvef": lvef}
    patients = pat.select(PID, "birth_date", "onset_date", "diagnosis_date", "death_date")
    for name, frame in flags.items():
        patients = patients.join(frame.select(PID).distinct().withColumn(name, F.lit(True)), on=PID, how="left")
    plans = {"patients": patients.fillna(False, subset=list(flags))}

    visits = t["visits"]
    after = visits.join(dead, on=PID).select(PID, "visit_date", "death_date").distinct()
    plans["visits"] = (visit_spreads(visits).join(after, on=[PID, "visit_date"], how="full")
                       .select(PID, "visit_date", "death_date", "edss_jump_30d", "weight_change_pct_30d"))
    plans["visits.sample"] = sample(visits.select("edss", "weight_kg"))
    plans["relapses"] = (t["relapses"].join(life, on=PID, how="left")
                         .where(F.col("ms_onset_date").isNotNull() | F.col("death_date").isNotNull())
                         .select(PID, "onset_date", "ms_onset_date", "death_date"))
    given = F.col("stop_reason_given")
    ended = F.col("end_date").isNotNull()
    plans["treatments"] = (t["treatments"].join(life, on=PID, how="left")
                           .where(F.col("birth_date").isNotNull() | F.col("death_date").isNotNull() | given.isNotNull())
                           .select(PID, "drug", "start_date", "birth_date", "death_date",
                                   F.when(ended, F.lower(given)).alias("stop_reason_ended"),
                                   F.when(~ended, given).alias("stop_reason_ongoing")))
    plans["labs"] = t["labs"].join(dead, on=PID).select(PID, "sample_date", "death_date")
    plans["function_tests"] = t["function_tests"].join(dead, on=PID).select(PID, "test_date", "death_date")
    plans["conditions"] = (t["conditions"].where(F.col("onset_date").isNotNull()).join(life, on=PID, how="left")
                           .where(F.col("birth_date").isNotNull()).select(PID, "onset_date", "birth_date"))
    plans["mri"] = mri_frame(t["mri"], life)
    plans["mri.sample"] = sample(t["mri"]).select(
        (F.col("gd_lesions").isNull() & F.col("new_t2_lesions").isNull()).cast("double").alias("counts_empty"))
    return plans


def sample(frame):
    """At most SAMPLE_ROWS rows, uniformly, with the fixed seed (the whole table when it is smaller).

    A seeded random order and a limit: Spark takes the top rows per partition, then merges
    them, so no step sends the whole table through one partition.
    """
    from pyspark.sql import functions as F

    return frame.orderBy(F.rand(SEED)).limit(SAMPLE_ROWS)


def visit_spreads(visits):
    """Per (patient, visit date) with another visit within 30 days: the EDSS and weight spread over the
    patient's visits dated in [date - 30 days, date] (see `pipeline.quality.stage.visit_spreads`)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_patient = Window.partitionBy(PID).orderBy("visit_date")
    day = F.col("visit_date")
    v = visits.select(PID, "visit_date", "edss", "weight_kg")
    near = (F.coalesce(F.datediff(day, F.lag(day).over(by_patient)) <= WINDOW_DAYS, F.lit(False))
            | F.coalesce(F.datediff(F.lead(day).over(by_patient), day) <= WINDOW_DAYS, F.lit(False)))
    days = (v.withColumn("_near", near).where("_near").groupBy(PID, "visit_date").agg(
        F.max("edss").alias("e_hi"), F.min("edss").alias("e_lo"), F.count("edss").alias("e_n"),
        F.max("weight_kg").alias("w_hi"), F.min("weight_kg").alias("w_lo"), F.count("weight_kg").alias("w_n"))
        .withColumn("_day", F.unix_date(day)))
    # The window [date - 30 days, date], both ends included, as Polars' rolling(period="30d", closed="both").
    win = Window.partitionBy(PID).orderBy("_day").rangeBetween(-WINDOW_DAYS, 0)
    spread = days.select(
        PID, "visit_date",
        F.when((F.col("e_n") > 0) & (F.sum("e_n").over(win) > 1),
               F.max("e_hi").over(win) - F.min("e_lo").over(win)).alias("edss_jump_30d"),
        F.when((F.col("w_n") > 0) & (F.sum("w_n").over(win) > 1),
               (F.max("w_hi").over(win) - F.min("w_lo").over(win)) * F.lit(100.0) / F.min("w_lo").over(win))
        .alias("weight_change_pct_30d"))
    return spread.where(F.col("edss_jump_30d").isNotNull() | F.col("weight_change_pct_30d").isNotNull())


def mri_frame(mri, life):
    """See `pipeline.quality.stage.mri_frame`."""
    from pyspark.sql import functions as F

    first = mri.groupBy(PID).agg(F.min("scan_date").alias("first_scan"))
    per_patient = life.select(PID, "birth_date", "death_date").join(first, on=PID)
    return (mri.join(per_patient, on=PID, how="left")
            .withColumn("first_scan_new_t2", F.when(F.col("scan_date") == F.col("first_scan"),
                                                     F.col("new_t2_lesions")))
            .where(F.col("birth_date").isNotNull() | F.col("death_date").isNotNull()
                   | F.col("first_scan_new_t2").isNotNull())
            .select(PID, "scan_date", "birth_date", "death_date", "first_scan_new_t2"))
