"""The Polars engine: each rule of the trial as lazy, vectorised Polars.

Every rule gets the accepted tables as LazyFrames (an absent optional table comes as
an empty frame of the right schema; the caller marks its criteria `unknown`), its
parameters and the reference date D, and returns one row per patient:
`patient_id, status` and the rule's evidence columns. Statuses are computed with
explicit `when/then` on every branch, never by what a null happens to do.

The SQL twin of each function is `sql/rules/<rule>.sql`; keep them in step.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

import polars as pl

PASS, FAIL, UNKNOWN, SCREENING = "pass", "fail", "unknown", "screening"
PID = "patient_id"
Tables = dict[str, pl.LazyFrame]
Rule = Callable[[Tables, dict, dt.date], pl.LazyFrame]
RULES: dict[str, Rule] = {}


def rule(fn: Rule) -> Rule:
    RULES[fn.__name__] = fn
    return fn


def lit(value: str) -> pl.Expr:
    return pl.lit(value, pl.Utf8)


def divide(num: pl.Expr, denom: pl.Expr | float) -> pl.Expr:
    """num / denom as a true IEEE division, as DuckDB computes it.

    Polars turns a division by a scalar (a literal, and in some plans even a
    broadcast `repeat` of one) into a multiplication by its reciprocal, which can
    differ from the division in the last bit: 30 / 88.4 is 0.33936651583710403, but
    30 * (1 / 88.4) is 0.3393665158371041. Dividing by a real column with the value
    on every row keeps the true division in every plan (eager, lazy, after a
    filter, inside when/then); `num * 0.0 + denom` is that column (num is finite
    here: validated numbers and day counts).
    """
    d = denom if isinstance(denom, pl.Expr) else pl.lit(float(denom), pl.Float64)
    return num / (num * 0.0 + d)


def days_before(D: dt.date, n: int) -> dt.date:
    return D - dt.timedelta(days=n)


def latest(frame: pl.LazyFrame, date_col: str, value: str, D: dt.date, days: int, worst: str,
           name: str) -> pl.LazyFrame:
    """Per patient, the latest non-empty `value` dated in [D - days, D]; a same-day tie gives the worst.

    Returns `patient_id, <name>, <name>_date`.
    """
    f = frame.filter(pl.col(value).is_not_null() & pl.col(date_col).is_between(days_before(D, days), D))
    f = f.filter(pl.col(date_col) == pl.col(date_col).max().over(PID))
    agg = pl.col(value).max() if worst == "max" else pl.col(value).min()
    return f.group_by(PID).agg(agg.alias(name), pl.col(date_col).first().alias(f"{name}_date"))


def age_years(birth: pl.Expr, D: dt.date) -> pl.Expr:
    """Completed years at D: D.year - birth.year - ((D.month, D.day) < (birth.month, birth.day))."""
    before_birthday = (pl.lit(D.month) < birth.dt.month()) | (
        (pl.lit(D.month) == birth.dt.month()) & (pl.lit(D.day) < birth.dt.day()))
    return (pl.lit(D.year, pl.Int64) - birth.dt.year().cast(pl.Int64) - before_birthday.cast(pl.Int64))


def active_at(D: dt.date) -> pl.Expr:
    """A condition is active at D: (onset empty or <= D) and (end empty or >= D)."""
    return ((pl.col("onset_date").is_null() | (pl.col("onset_date") <= D))
            & (pl.col("end_date").is_null() | (pl.col("end_date") >= D)))


def patients(t: Tables) -> pl.LazyFrame:
    return t["patients"].select(PID)


def on_patients(base: pl.LazyFrame, *per_patient: pl.LazyFrame) -> pl.LazyFrame:
    """`base` (one row per patient, in the patients' order) with per-patient frames left-joined.

    The order is kept on purpose: `engines.evaluate` then places the rules' results
    side by side instead of joining them again.
    """
    for frame in per_patient:
        base = base.join(frame, on=PID, how="left", maintain_order="left")
    return base


def flag(t: Tables, cond: pl.Expr, name: str = "hit") -> pl.LazyFrame:
    """Patients with at least one condition row matching `cond` (one row each)."""
    return t["conditions"].filter(cond).select(PID).unique().with_columns(pl.lit(True).alias(name))


def fail_if_flagged(t: Tables, cond: pl.Expr) -> pl.LazyFrame:
    return on_patients(patients(t), flag(t, cond)).select(
        PID, pl.when(pl.col("hit").fill_null(False)).then(lit(FAIL)).otherwise(lit(PASS)).alias("status"))


@rule
def alive(t, p, D):
    dead = pl.col("death_date").is_not_null() & (pl.col("death_date") <= D)
    return t["patients"].select(PID, pl.when(dead).then(lit(FAIL)).otherwise(lit(PASS)).alias("status"))


@rule
def age(t, p, D):
    a = age_years(pl.col("birth_date"), D)
    within = a >= p["min_age"]
    if p["max_age"] is not None:
        within = within & (a <= p["max_age"])
    return t["patients"].select(
        PID, pl.when(pl.col("birth_date").is_null()).then(lit(UNKNOWN))
        .when(within).then(lit(PASS)).otherwise(lit(FAIL)).alias("status"), a.alias("age"))


@rule
def ms_course(t, p, D):
    c = pl.col("ms_course")
    return t["patients"].select(
        PID, pl.when(c.is_in(p["courses"])).then(lit(PASS))
        .when(c.is_in(p["unknown_courses"])).then(lit(UNKNOWN)).otherwise(lit(FAIL)).alias("status"))


@rule
def research_consent(t, p, D):
    c = pl.col("research_consent")
    return t["patients"].select(
        PID, pl.when(c == "Y").then(lit(PASS)).when(c == "N").then(lit(FAIL)).otherwise(lit(UNKNOWN)).alias("status"))


@rule
def edss_range(t, p, D):
    e = latest(t["visits"], "visit_date", "edss", D, p["lookback_days"], "max", "edss")
    return on_patients(patients(t), e).select(
        PID, pl.when(pl.col("edss").is_null()).then(lit(UNKNOWN))
        .when(pl.col("edss").is_between(p["min_edss"], p["max_edss"])).then(lit(PASS))
        .otherwise(lit(FAIL)).alias("status"), "edss", "edss_date")


@rule
def disease_duration(t, p, D):
    # Dates after D are not known at D: such an onset or diagnosis counts as empty.
    def years(col):
        known = pl.col(col).is_not_null() & (pl.col(col) <= D)
        return pl.when(known).then(divide((pl.lit(D) - pl.col(col)).dt.total_days().cast(pl.Float64), 365.25))
    onset, diag = years("onset_date"), years("diagnosis_date")
    return t["patients"].select(
        PID, pl.when(onset.is_not_null()).then(pl.when(onset < p["max_years"]).then(lit(PASS)).otherwise(lit(FAIL)))
        # Onset can only precede diagnosis: a diagnosis that old already fails.
        .when(diag.is_not_null() & (diag >= p["max_years"])).then(lit(FAIL))
        .otherwise(lit(UNKNOWN)).alias("status"),
        pl.coalesce(onset, diag).alias("years"))


@rule
def no_malignancy(t, p, D):
    code = pl.col("code").fill_null("")
    excluded = pl.lit(False)
    for prefix in p["excluded_code_prefixes"]:
        excluded = excluded | code.str.starts_with(prefix.upper())
    cond = ((pl.col("category") == "malignancy")
            & (pl.col("onset_date").is_null() | (pl.col("onset_date") <= D)) & ~excluded)
    return fail_if_flagged(t, cond)


@rule
def no_severe_condition(t, p, D):
    return fail_if_flagged(t, pl.col("severity").is_in(p["severities"]) & active_at(D))


@rule
def consent_capacity(t, p, D):
    return fail_if_flagged(t, (pl.col("impairs_consent") == "Y") & active_at(D))


@rule
def uncontrolled_infection(t, p, D):
    inf = t["conditions"].filter((pl.col("category") == "infection")
                                 & pl.col("infection_type").is_in(p["infection_types"]) & active_at(D))
    per = inf.group_by(PID).agg((pl.col("controlled") == "N").any().alias("any_n"),
                                pl.col("controlled").is_null().any().alias("any_empty"))
    return on_patients(patients(t), per).select(
        PID, pl.when(pl.col("any_n").fill_null(False)).then(lit(FAIL))
        .when(pl.col("any_empty").fill_null(False)).then(lit(UNKNOWN)).otherwise(lit(PASS)).alias("status"))


def _function_test(t, D, test, days, name):
    return latest(t["function_tests"].filter(pl.col("test") == test), "test_date", "value", D, days, "min", name)


@rule
def lvef(t, p, D):
    e = _function_test(t, D, "LVEF", p["lookback_days"], "lvef")
    return on_patients(patients(t), e).select(
        PID, pl.when(pl.col("lvef").is_null()).then(lit(UNKNOWN))
        .when(pl.col("lvef") < p["min_lvef"]).then(lit(FAIL)).otherwise(lit(PASS)).alias("status"),
        "lvef", "lvef_date")


@rule
def pulmonary_function(t, p, D):
    fev = _function_test(t, D, "FEV1", p["lookback_days"], "fev1")
    dlco = _function_test(t, D, "DLCO", p["lookback_days"], "dlco")
    f, d = pl.col("fev1"), pl.col("dlco")
    low = (f.is_not_null() & (f < p["min_fev1"])) | (d.is_not_null() & (d < p["min_dlco"]))
    return on_patients(patients(t), fev, dlco).select(
        PID, pl.when(low).then(lit(FAIL)).when(f.is_not_null() & d.is_not_null()).then(lit(PASS))
        .otherwise(lit(UNKNOWN)).alias("status"), "fev1", "fev1_date", "dlco", "dlco_date")


@rule
def screening(t, p, D):
    return patients(t).with_columns(lit(SCREENING).alias("status"))


def lab_ratios(t: Tables, D: dt.date, days: int, uln: dict[str, tuple[float, float | None]]) -> pl.LazyFrame:
    """Latest result of each test in `uln` within `days`, as value/ULN; a same-day tie gives the highest ratio.

    `uln` maps a test to (default ULN in U/L or umol/L, umol/L per mg/dL or None).
    ULN: the row's ref_high (same unit as the value), else the default converted to
    the row's unit. Returns one row per (patient, test): ratio, value in mg/dL, date.
    """
    test, unit = pl.col("test"), pl.col("unit")
    default_uln = pl.lit(None, pl.Float64)
    to_mg_dl = pl.lit(None, pl.Float64)
    for name, (default, factor) in uln.items():
        converted = pl.lit(default) if factor is None else (
            pl.when(unit == "mg/dL").then(pl.lit(default / factor)).otherwise(pl.lit(default)))
        default_uln = pl.when(test == name).then(converted).otherwise(default_uln)
        if factor is not None:
            to_mg_dl = pl.when(test == name).then(
                pl.when(unit == "mg/dL").then(pl.col("value")).otherwise(divide(pl.col("value"), factor))).otherwise(to_mg_dl)
    f = (t["labs"].filter(test.is_in(list(uln)) & pl.col("sample_date").is_between(days_before(D, days), D))
         .with_columns(divide(pl.col("value"), pl.coalesce(pl.col("ref_high"), default_uln)).alias("ratio"),
                       to_mg_dl.alias("mg_dl")))
    f = f.filter(pl.col("sample_date") == pl.col("sample_date").max().over(PID, "test"))
    # The worst of a same-day tie: highest ratio, then highest value in mg/dL (a total
    # order on what is used, so both engines pick the same row).
    return (f.sort(PID, "test", "ratio", "mg_dl", descending=[False, False, True, True], nulls_last=True)
            .group_by(PID, "test").agg(pl.col("ratio").first(), pl.col("mg_dl").first(),
                                       pl.col("sample_date").first()))


@rule
def organ_function(t, p, D):
    uln = {"AST": (p["ast_default_uln"], None), "ALT": (p["alt_default_uln"], None),
           "TBIL": (p["tbil_default_uln_umol"], p["tbil_umol_per_mg_dl"]),
           "CREAT": (p["creat_default_uln_umol"], p["creat_umol_per_mg_dl"])}
    labs = lab_ratios(t, D, p["lookback_days"], uln)
    wide = labs.group_by(PID).agg(
        *[pl.col("ratio").filter(pl.col("test") == x).first().alias(x.lower()) for x in uln])
    limits = {"ast": p["ast_max_uln"], "alt": p["alt_max_uln"], "tbil": p["tbil_max_uln"], "creat": p["creat_max_uln"]}
    above = pl.lit(False)
    for col, limit in limits.items():
        above = above | (pl.col(col).is_not_null() & (pl.col(col) > limit))
    all_present = pl.all_horizontal(*[pl.col(c).is_not_null() for c in limits])
    return on_patients(patients(t), wide).select(
        PID, pl.when(above).then(lit(FAIL)).when(all_present).then(lit(PASS)).otherwise(lit(UNKNOWN)).alias("status"),
        *[pl.col(c).alias(f"{c}_uln_ratio") for c in limits])


@rule
def creatinine_clearance(t, p, D):
    uln = {"CREAT": (p["creat_default_uln_umol"], p["creat_umol_per_mg_dl"])}
    creat = lab_ratios(t, D, p["lab_lookback_days"], uln).select(PID, pl.col("mg_dl").alias("creat_mg_dl"))
    weight = latest(t["visits"], "visit_date", "weight_kg", D, p["weight_lookback_days"], "min", "weight")
    a = age_years(pl.col("birth_date"), D)
    # Cockcroft-Gault, in the order the formula is written (both engines alike).
    male = (pl.lit(140, pl.Int64) - a).cast(pl.Float64) * pl.col("weight") / (pl.lit(72.0) * pl.col("creat_mg_dl"))
    female = male * p["female_factor"]
    sex, lo = pl.col("sex"), p["min_crcl"]
    crcl = pl.when(sex == "F").then(female).when(sex == "M").then(male)
    # Unknown sex: decided only when both possible values agree.
    status = (pl.when(male.is_null()).then(lit(UNKNOWN))
              .when(sex.is_in(["F", "M"])).then(pl.when(crcl < lo).then(lit(FAIL)).otherwise(lit(PASS)))
              .when(male < lo).then(lit(FAIL)).when(female >= lo).then(lit(PASS)).otherwise(lit(UNKNOWN)))
    return (on_patients(t["patients"].select(PID, "sex", "birth_date"), creat, weight)
            .select(PID, status.alias("status"), crcl.alias("crcl"), "creat_mg_dl", "weight", "weight_date"))


@rule
def karnofsky(t, p, D):
    k = latest(t["visits"], "visit_date", "karnofsky", D, p["lookback_days"], "min", "karnofsky")
    return on_patients(patients(t), k).select(
        PID, pl.when(pl.col("karnofsky").is_null()).then(lit(UNKNOWN))
        .when(pl.col("karnofsky") < p["min_karnofsky"]).then(lit(FAIL)).otherwise(lit(PASS)).alias("status"),
        "karnofsky", "karnofsky_date")


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


def visit_levels(valid: pl.LazyFrame, p: dict) -> pl.LazyFrame:
    """Per valid visit v, the highest threshold at which v is a confirmed or a pending worsening.

    C(v) is the earliest valid visit >= v.day + confirmation_days. v is confirmed at a
    threshold thr when C exists and every valid visit from v to C is >= thr, i.e. when
    `conf_level` = min(edss over [v.day, v.day + confirmation_days), edss of C) >= thr.
    Without C, v is pending when every valid visit from v on is >= thr: `pend_level`.
    """
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
    ).select(
        "pk", "day", "edss", "c_day",
        pl.when(pl.col("c_day").is_not_null()).then(pl.min_horizontal("win_min", "c_edss")).alias("conf_level"),
        pl.when(pl.col("c_day").is_null()).then(pl.col("after_min")).alias("pend_level"),
    )


def episodes(t: Tables, p: dict, D: dt.date) -> pl.LazyFrame:
    """Line 1/2 episodes started by D with a non-empty window [start + lag, end or D]."""
    d = (pl.lit(D).cast(pl.Int64))
    end = pl.when(pl.col("end_date").is_not_null() & (pl.col("end_date") <= D)).then(_day("end_date")).otherwise(d)
    return (t["treatments"].filter(pl.col("line").is_in(p["lines"]) & (pl.col("start_date") <= D))
            .select(PID, "drug", "start_date", "end_date", _day("start_date").alias("start"),
                    (_day("start_date") + p["lag_days"]).alias("win_lo"), end.alias("win_hi"))
            .filter(pl.col("win_hi") >= pl.col("win_lo"))
            .with_row_index("ep"))


@rule
def progression_on_therapy(t, p, D):
    ids = patients(t).with_row_index("pk")
    valid = valid_edss_visits(t, p, D, ids).collect().lazy()
    levels = visit_levels(valid, p)
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


def evaluate(tables: dict[str, pl.DataFrame], criteria, as_of: dt.date) -> dict[str, pl.DataFrame]:
    """Run every criterion's rule; all lazy plans are collected together."""
    lazy = {name: frame.lazy() for name, frame in tables.items()}
    plans = [RULES[c.rule](lazy, c.parameters, as_of) for c in criteria]
    return dict(zip([c.id for c in criteria], pl.collect_all(plans)))
