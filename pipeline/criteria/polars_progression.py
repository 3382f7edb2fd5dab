"""The `confirmed_progression` block in Polars: confirmed EDSS worsening within a treatment episode.

The definition is docs/criteria-nct04203017.md, "Progression on first- or second-line
therapy"; the SQL twin is sql/blocks/confirmed_progression.sql. `p` holds the node's
fields (lines, lag_days, baseline_lookback_days, late_baseline_days, increase_below,
increase_from, increase_step_edss, confirmation_days, relapse_exclusion_days).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipeline.criteria.polars_helpers import FAIL, PASS, PID, UNKNOWN, Tables, lit, on_patients, patients


def _day(col: str) -> pl.Expr:
    """A date as whole days since 1970-01-01 (the engines compare days, not timestamps)."""
    return pl.col(col).cast(pl.Int64)


# Progression works on tens of millions of visits, where as-of joins `by` a string
# patient id and ranks over strings are slow. So each patient gets a dense integer
# key `pk` (its row in patients), and (pk, day) is packed into one sortable integer:
# an as-of join on it without `by` is a plain merge, and a match that crossed into
# another patient is recognised by its pk.
DAY_BITS = 22
DAY_OFFSET = 1 << (DAY_BITS - 1)  # days from about 3700 BC to 7700 AD stay in range


def with_pk(frame: pl.LazyFrame, ids: pl.LazyFrame) -> pl.LazyFrame:
    return frame.join(ids, on=PID, how="inner")


def packed(pk: pl.Expr, day: pl.Expr) -> pl.Expr:
    return pk.cast(pl.Int64) * (1 << DAY_BITS) + (day + DAY_OFFSET)


def pk_of(key: pl.Expr) -> pl.Expr:
    return key // (1 << DAY_BITS)


def day_of(key: pl.Expr) -> pl.Expr:
    return key % (1 << DAY_BITS) - DAY_OFFSET


def valid_edss_visits(t: Tables, p: dict, D: dt.date, ids: pl.LazyFrame) -> pl.LazyFrame:
    """The EDSS series for progression: one value per date (the highest), dated <= D,
    without visits within `relapse_exclusion_days` after a relapse onset (a relapse
    inflates EDSS for weeks and is not progression). Columns: pk, day, edss, key.
    """
    # Sorted by key first, so that the same-day group-by runs over adjacent rows.
    series = (with_pk(t["visits"].filter(pl.col("edss").is_not_null() & (pl.col("visit_date") <= D)), ids)
              .select("pk", _day("visit_date").alias("day"), "edss")
              .with_columns(packed(pl.col("pk"), pl.col("day")).alias("key")).sort("key")
              .group_by("key", maintain_order=True)
              .agg(pl.col("pk").first(), pl.col("day").first(), pl.col("edss").max())
              .select("pk", "day", "edss", "key"))
    onsets = (with_pk(t["relapses"].filter(pl.col("onset_date") <= D), ids)
              .select(packed(pl.col("pk"), _day("onset_date")).alias("onset_key")).unique().sort("onset_key"))
    # The latest onset on or before the visit is the only one that can still cover it.
    m = series.join_asof(onsets, left_on="key", right_on="onset_key", strategy="backward", check_sortedness=False)
    same = pk_of(pl.col("onset_key")) == pl.col("pk")
    covered = same.fill_null(False) & (pl.col("day") <= day_of(pl.col("onset_key")) + p["relapse_exclusion_days"])
    return m.filter(~covered).select("pk", "day", "edss", "key")


def visit_windows(valid: pl.LazyFrame, p: dict) -> pl.LazyFrame:
    """`valid` with, per visit, c_day and c_edss (the confirming visit C), win_min (the lowest EDSS over
    [v.day, v.day + confirmation_days)) and after_min (the lowest from v on); latest visit first."""
    conf = p["confirmation_days"]
    right = valid.select(pl.col("key").alias("c_key"), pl.col("edss").alias("c_edss"))  # sorted by key
    v = (valid.with_columns((pl.col("key") + conf).alias("c_from"))
         .join_asof(right, left_on="c_from", right_on="c_key", strategy="forward", check_sortedness=False)
         .with_columns(pl.when(pk_of(pl.col("c_key")) == pl.col("pk")).then(day_of(pl.col("c_key"))).alias("c_day"),
                       pl.when(pk_of(pl.col("c_key")) == pl.col("pk")).then(pl.col("c_edss")).alias("c_edss")))
    # Reversed (latest first) and keyed by -key, a backward-looking integer rolling window
    # of `conf` looks forward in time within a patient without a sort: [day, day + conf)
    # (patients lie 2^22 apart). The lowest EDSS from a visit on is a running minimum in
    # that order, restarted per patient without a group-by: validated EDSS lie in
    # [0, 10] in steps of 0.5, so pk * 64 + edss is exact and every value of a patient
    # is below those of the patient before it (pk descends).
    v = v.reverse().with_columns((-pl.col("key")).alias("rkey"), (pl.col("pk").cast(pl.Float64) * 64.0).alias("base"))
    return v.with_columns(
        pl.col("edss").rolling_min_by("rkey", window_size=f"{conf}i", closed="right").alias("win_min"),
        ((pl.col("base") + pl.col("edss")).cum_min() - pl.col("base")).alias("after_min"),
    ).select("pk", "day", "edss", "key", "c_day", "c_edss", "win_min", "after_min")


def visit_levels(valid: pl.LazyFrame, p: dict) -> pl.LazyFrame:
    """Per valid visit v, the highest threshold at which v is a confirmed or a pending worsening.

    C(v) is the earliest valid visit >= v.day + confirmation_days. v is confirmed at a
    threshold thr when C exists and every valid visit from v to C is >= thr, i.e. when
    `conf_level` = min(edss over [v.day, v.day + confirmation_days), edss of C) >= thr.
    Without C, v is pending when every valid visit from v on is >= thr: `pend_level`.
    """
    return visit_windows(valid, p).select(
        "pk", "day", "edss", "c_day",
        pl.when(pl.col("c_day").is_not_null()).then(pl.min_horizontal("win_min", "c_edss")).alias("conf_level"),
        pl.when(pl.col("c_day").is_null()).then(pl.col("after_min")).alias("pend_level"),
    )


END_OF_TIME = dt.date(9999, 12, 31)


def valid_and_levels(t: Tables, p: dict, D: dt.date, ids: pl.LazyFrame,
                     cache: dict | None) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """The valid EDSS visits at D (sorted by key) and their levels (`visit_levels`).

    With a `cache` (a dict kept across the dates of a history, `pipeline/engines/dated.py`),
    the windows are computed once over the whole series and each date derives its own from
    them, exactly (the same argument as dated.precompute_levels for the SQL twin): at D the
    valid visits are the whole series' dated <= D; c_day, c_edss and win_min are the whole
    series' where that c_day is <= D (every visit they look at is then dated <= D), and
    c_day is null otherwise; after_min, needed only there, is a running minimum over those
    visits alone, which are the last ones of each patient's series up to D.
    """
    if cache is None:
        valid = valid_edss_visits(t, p, D, ids).collect().lazy()
        return valid, visit_levels(valid, p)
    key = (p["relapse_exclusion_days"], p["confirmation_days"])
    if key not in cache:
        whole = valid_edss_visits(t, p, END_OF_TIME, ids).collect().lazy()
        cache[key] = visit_windows(whole, p).reverse().drop("after_min").collect()  # sorted by key again
    whole = cache[key].lazy()
    d = pl.lit(D).cast(pl.Int64)
    valid = whole.filter(pl.col("day") <= d).select("pk", "day", "edss", "key")
    confirmed = whole.filter(pl.col("c_day") <= d).select(
        "pk", "day", "edss", "c_day", pl.min_horizontal("win_min", "c_edss").alias("conf_level"),
        pl.lit(None, pl.Float64).alias("pend_level"))
    pending = whole.filter((pl.col("day") <= d) & (pl.col("c_day").is_null() | (pl.col("c_day") > d))).select(
        "pk", "day", "edss", pl.lit(None, pl.Int64).alias("c_day"), pl.lit(None, pl.Float64).alias("conf_level"),
        pl.col("edss").reverse().cum_min().reverse().over("pk").alias("pend_level"))
    return valid, pl.concat([confirmed, pending], how="vertical_relaxed")


def episodes(t: Tables, p: dict, D: dt.date) -> pl.LazyFrame:
    """Line 1/2 episodes started by D with a non-empty window [start + lag, end or D]."""
    d = (pl.lit(D).cast(pl.Int64))
    end = pl.when(pl.col("end_date").is_not_null() & (pl.col("end_date") <= D)).then(_day("end_date")).otherwise(d)
    return (t["treatments"].filter(pl.col("line").is_in(p["lines"]) & (pl.col("start_date") <= D))
            .select(PID, "drug", "start_date", "end_date", _day("start_date").alias("start"),
                    (_day("start_date") + p["lag_days"]).alias("win_lo"), end.alias("win_hi"))
            .filter(pl.col("win_hi") >= pl.col("win_lo"))
            .with_row_index("ep"))


def confirmed_progression(t, p, D, cache: dict | None = None):
    ids = patients(t).with_row_index("pk")
    valid, levels = valid_and_levels(t, p, D, ids, cache)
    ep = with_pk(episodes(t, p, D), ids).with_columns(packed(pl.col("pk"), pl.col("start")).alias("s_key"))
    base = valid.select("key", pl.col("edss").alias("b_edss"))  # sorted by key

    def matched(col: str, name: str) -> list[pl.Expr]:
        same = pk_of(pl.col(col)) == pl.col("pk")
        return [pl.when(same).then(day_of(pl.col(col))).alias(f"{name}_day"),
                pl.when(same).then(pl.col(f"{name}_edss")).alias(f"{name}_edss")]

    # Baseline: the latest valid visit in [start - lookback, start], else the earliest in (start, start + late].
    ep = (ep.sort("s_key")
          .join_asof(base.rename({"key": "b1_key", "b_edss": "b1_edss"}), left_on="s_key", right_on="b1_key",
                     strategy="backward", check_sortedness=False)
          .with_columns(*matched("b1_key", "b1"), (pl.col("s_key") + 1).alias("after_key"))
          .join_asof(base.rename({"key": "b2_key", "b_edss": "b2_edss"}), left_on="after_key",
                     right_on="b2_key", strategy="forward", check_sortedness=False)
          .with_columns(*matched("b2_key", "b2")))
    early = pl.col("b1_day").is_not_null() & (pl.col("b1_day") >= pl.col("start") - p["baseline_lookback_days"])
    late = pl.col("b2_day").is_not_null() & (pl.col("b2_day") <= pl.col("start") + p["late_baseline_days"])
    b = pl.when(early).then(pl.col("b1_edss")).when(late).then(pl.col("b2_edss"))
    b_day = pl.when(early).then(pl.col("b1_day")).when(late).then(pl.col("b2_day"))
    ep = ep.with_columns(b.alias("b"), b_day.alias("b_day")).with_columns(
        (pl.col("b") + pl.when(pl.col("b") < p["increase_step_edss"]).then(pl.lit(p["increase_below"]))
         .otherwise(pl.lit(p["increase_from"]))).alias("thr"))
    # Visits in each episode's window (episodes are judged each on its own).
    inwin = (ep.select("ep", "pk", "win_lo", "win_hi", "thr").join(levels, on="pk", how="inner")
             .filter(pl.col("day").is_between(pl.col("win_lo"), pl.col("win_hi"))))
    confirmed = (pl.col("conf_level") >= pl.col("thr")).fill_null(False)
    judged = inwin.group_by("ep").agg(
        pl.len().alias("n_window"),
        confirmed.any().alias("confirmed"),
        (pl.col("pend_level") >= pl.col("thr")).fill_null(False).any().alias("pending"),
        pl.col("day").filter(confirmed).min().alias("w_day"),
    )
    first_w = (inwin.filter(confirmed).select("ep", pl.col("day").alias("w_day"), pl.col("edss").alias("w_edss"),
                                              pl.col("c_day").alias("w_c_day")))
    ep = (ep.join(judged, on="ep", how="left").join(first_w, on=["ep", "w_day"], how="left")
          .with_columns(
              pl.when(pl.col("confirmed").fill_null(False)).then(lit(PASS))
              .when(pl.col("b").is_null() | pl.col("n_window").is_null()).then(lit(UNKNOWN))  # not evaluable
              .when(pl.col("pending").fill_null(False)).then(lit(UNKNOWN))
              .otherwise(lit(FAIL)).alias("ep_status")))
    rank = pl.col("ep_status").replace_strict({PASS: 0, UNKNOWN: 1, FAIL: 2}, return_dtype=pl.Int64)
    # The episode shown as evidence: the decisive one, earliest worsening first.
    shown = (ep.with_columns(rank.alias("rank"))
             .sort("rank", "w_day", "start", "drug", "end_date", nulls_last=True)
             .group_by(PID, maintain_order=True).first())

    def as_date(col):
        return pl.col(col).cast(pl.Int32).cast(pl.Date)

    return on_patients(patients(t), shown).select(
        PID, pl.col("ep_status").fill_null(lit(FAIL)).alias("status"),
        pl.col("drug"), pl.col("start_date").alias("episode_start"), pl.col("end_date").alias("episode_end"),
        as_date("b_day").alias("baseline_date"), pl.col("b").alias("baseline_edss"),
        as_date("w_day").alias("worsening_date"), pl.col("w_edss").alias("worsening_edss"),
        as_date("w_c_day").alias("confirmed_date"))


def recent_progression(t, p, D, cache: dict | None = None):
    """Confirmed EDSS worsening in the recent window [D - window_days, D] (docs/criteria-nct04411641.md).

    Baseline: the latest valid visit in [ws - baseline_lookback_days, ws), else the earliest
    valid visit in [ws, D] (ws = D - window_days). Worsening candidates are the valid visits
    of the recent window after the baseline's date; confirmation as in `confirmed_progression`
    (the confirming visit may be any valid visit up to D). `p`: window_days,
    baseline_lookback_days, increase_below, increase_from, increase_step_edss,
    confirmation_days, relapse_exclusion_days. The SQL twin: sql/blocks/recent_progression.sql.
    """
    ids = patients(t).with_row_index("pk")
    valid, levels = valid_and_levels(t, p, D, ids, cache)
    d = pl.lit(D).cast(pl.Int64)
    ws = d - p["window_days"]
    early = (valid.filter((pl.col("day") >= ws - p["baseline_lookback_days"]) & (pl.col("day") < ws))
             .group_by("pk").agg(pl.col("day").max().alias("b1_day"),
                                 pl.col("edss").sort_by("day").last().alias("b1_edss")))
    late = (valid.filter(pl.col("day").is_between(ws, d))
            .group_by("pk").agg(pl.col("day").min().alias("b2_day"),
                                pl.col("edss").sort_by("day").first().alias("b2_edss")))
    base = (ids.join(early, on="pk", how="left", maintain_order="left")
            .join(late, on="pk", how="left", maintain_order="left")
            .with_columns(pl.coalesce("b1_edss", "b2_edss").alias("b"),
                          pl.when(pl.col("b1_day").is_not_null()).then(pl.col("b1_day"))
                          .otherwise(pl.col("b2_day")).alias("b_day"))
            .with_columns((pl.col("b") + pl.when(pl.col("b") < p["increase_step_edss"])
                           .then(pl.lit(p["increase_below"])).otherwise(pl.lit(p["increase_from"]))).alias("thr")))
    cand = (levels.filter(pl.col("day").is_between(ws, d))
            .join(base.select("pk", "b_day", "thr"), on="pk", how="inner")
            .filter(pl.col("day") > pl.col("b_day")))
    confirmed = (pl.col("conf_level") >= pl.col("thr")).fill_null(False)
    judged = cand.group_by("pk").agg(
        pl.len().alias("n_window"), confirmed.any().alias("confirmed"),
        (pl.col("pend_level") >= pl.col("thr")).fill_null(False).any().alias("pending"),
        pl.col("day").filter(confirmed).min().alias("w_day"))
    first_w = cand.filter(confirmed).select("pk", pl.col("day").alias("w_day"), pl.col("edss").alias("w_edss"),
                                            pl.col("c_day").alias("w_c_day"))
    out = (base.join(judged, on="pk", how="left", maintain_order="left")
           .join(first_w, on=["pk", "w_day"], how="left", maintain_order="left"))
    status = (pl.when(pl.col("confirmed").fill_null(False)).then(lit(PASS))
              .when(pl.col("b").is_null() | pl.col("n_window").is_null()).then(lit(UNKNOWN))
              .when(pl.col("pending").fill_null(False)).then(lit(UNKNOWN)).otherwise(lit(FAIL)))

    def as_date(col):
        return pl.col(col).cast(pl.Int32).cast(pl.Date)

    return out.select(PID, status.alias("status"), as_date("b_day").alias("baseline_date"),
                      pl.col("b").alias("baseline_edss"), as_date("w_day").alias("worsening_date"),
                      pl.col("w_edss").alias("worsening_edss"), as_date("w_c_day").alias("confirmed_date"))
