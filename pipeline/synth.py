"""A synthetic MS registry, realistic enough for tests, demos and benchmarks.

    python -m pipeline.synth --patients 2000 --seed 1 --out DIR [--dialect regional] [--with-bad-rows]
    python -m pipeline.synth --patients 2000 --seed 1 --out DIR --format omop [--omop-as csv|parquet|duckdb]

Everything is drawn per patient with numpy and exploded into rows with polars (no
Python loop over patients): EDSS trajectories in 0.5 steps that drift upwards with
relapses, visits every 3-12 months, DMT sequences escalating from first to second
line with brand and generic names mixed, labs with mixed units and laboratory ULNs,
cardiac/pulmonary tests for a subset, comorbidities, missing values, several sites.
MRI follow-up (a baseline scan near diagnosis, then every 6-24 months and around
relapses, with gadolinium-enhancing and new T2 lesion counts) and the stop reasons of
ended treatment episodes come from a second random generator, seeded from
(seed, 13), so that every other table and column is exactly what this generator wrote
before those additions for the same seed (tests/test_synth.py checks it).
`--with-bad-rows` adds a handful of the messy rows a real export has, and a few stop
reasons outside the contract's list or on ongoing episodes (findings, not quarantine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import polars as pl

REF = dt.date(2026, 11, 1)
EPOCH = dt.date(1970, 1, 1)
REF_DAY = (REF - EPOCH).days
SITES = [f"SITE{i:02d}" for i in range(1, 9)]
FIRST_LINE = ["Avonex", "Rebif", "interferon beta-1a", "Copaxone", "glatiramer_acetate", "Aubagio",
              "Tecfidera", "dimethyl fumarate", "Plegridy", "Betaferon"]
SECOND_LINE = ["Tysabri", "natalizumab", "Gilenya", "Ocrevus", "ocrelizumab", "Kesimpta", "Mavenclad",
               "Lemtrada", "rituximab", "Mayzent"]
MRI_ERA = (dt.date(1992, 1, 1) - EPOCH).days
PLANNED_COURSES = ["Mavenclad", "Lemtrada"]  # cladribine and alemtuzumab: stopped as planned after the last course
# Stop reasons by the kind of episode that ended (probabilities; None = not recorded).
STOP_CHOICES = ["inefficacy", "adverse_event", "patient_choice", "planned", "pregnancy", "other", None]
STOP_P = {
    "escalation": [.55, .12, .08, .0, .0, .05, .20],  # first line followed by second line
    "planned_course": [.05, .08, .02, .65, .0, .02, .18],
    "other": [.22, .25, .18, .0, .0, .08, .27],
}
PREGNANCY_P = {"escalation": .04, "planned_course": .0, "other": .15}  # women aged 18-45 at the end of the episode
# --with-bad-rows: values outside the contract's list (read as `other`) and reasons on ongoing episodes.
MESSY_STOP_REASONS = ["lack of efficacy", "Side effects", "LACK OF EFFICACY", "progression", "moved abroad",
                      "lack of efficacy"]
MESSY_ONGOING_REASONS = ["patient_choice", "planned", "Inefficacy"]
DIALECTS = {"default": dict(separator=",", decimal=".", date_format="%Y-%m-%d", encoding="utf-8"),
            "regional": dict(separator=";", decimal=",", date_format="%d.%m.%Y", encoding="cp1251")}


def _pick(rng, values, n, p=None) -> pl.Series:
    """n draws from `values` (None allowed) as a typed polars Series."""
    return pl.Series(values, dtype=pl.Utf8).gather(rng.choice(len(values), size=n, p=p))


def _where(mask, a, b) -> pl.Series:
    return pl.select(pl.when(pl.Series(mask)).then(pl.lit(a) if not isinstance(a, pl.Series) else a)
                     .otherwise(pl.lit(b, pl.Utf8) if not isinstance(b, pl.Series) else b)).to_series()


def _date(days) -> pl.Expr:
    return pl.lit(pl.Series(days).cast(pl.Int32)).cast(pl.Date) if not isinstance(days, pl.Expr) else days.cast(pl.Int32).cast(pl.Date)


def _per_patient(rng, pids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.repeat(pids, counts)


def generate(n: int, seed: int, first: int = 0) -> dict[str, pl.DataFrame]:
    """n patients, numbered from `first` (a block of a large export: see `write_blocks`)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    pid = np.char.add("P", np.char.zfill((idx + first).astype(str), 7))
    age_days = (rng.uniform(16, 78, n) * 365.25).astype(np.int64)
    birth = REF_DAY - age_days
    onset = birth + (rng.uniform(16, 50, n) * 365.25).astype(np.int64)
    onset = np.minimum(onset, REF_DAY - 30)
    diagnosis = np.minimum(onset + (rng.exponential(1.2, n) * 365.25).astype(np.int64), REF_DAY - 10)
    dead = rng.random(n) < 0.02
    patients = pl.DataFrame({
        "patient_id": pid,
        "site_id": _pick(rng, SITES, n, [.22, .18, .15, .12, .1, .1, .08, .05]),
        "sex": _pick(rng, ["F", "M", None], n, [.69, .3, .01]),
        "birth_date": birth, "onset_date": onset, "diagnosis_date": diagnosis,
        "ms_course": _pick(rng, ["RRMS", "SPMS", "PPMS", "CIS", "RIS", "UNK", None], n, [.6, .17, .1, .05, .02, .03, .03]),
        "research_consent": _pick(rng, ["Y", "N", None], n, [.7, .1, .2]),
        "death_date": np.where(dead, REF_DAY - rng.integers(1, 2000, n), -10**6),
    }).with_columns(
        pl.when(pl.Series(rng.random(n) < .08)).then(None).otherwise(pl.col("onset_date")).alias("onset_date"),
        pl.when(pl.Series(rng.random(n) < .04)).then(None).otherwise(pl.col("diagnosis_date")).alias("diagnosis_date"),
        pl.when(pl.col("death_date") > -10**6).then(pl.col("death_date")).alias("death_date"),
    ).with_columns(*[_date(pl.col(c)).alias(c) for c in ("birth_date", "onset_date", "diagnosis_date", "death_date")])

    # Visits: every 3-12 months from diagnosis (or onset) to the reference date.
    start = np.where(rng.random(n) < .5, diagnosis, onset)
    span = np.maximum(REF_DAY - start, 1)
    n_vis = np.clip((span / rng.uniform(90, 365, n)).astype(np.int64), 1, 60)
    vp = np.repeat(idx, n_vis)
    gaps = rng.uniform(90, 365, vp.size).astype(np.int64)
    steps = rng.choice([-0.5, 0.0, 0.5, 1.0], size=vp.size, p=[.14, .6, .21, .05])
    visits = pl.DataFrame({"i": vp, "gap": gaps, "step": steps, "w0": np.repeat(rng.uniform(48, 105, n), n_vis)}).with_columns(
        (pl.lit(0) + pl.col("gap").cum_sum().over("i") - pl.col("gap")).alias("off"),
        (pl.col("step").cum_sum().over("i") + pl.Series(np.repeat(rng.choice([0., .5, 1., 1.5, 2., 2.5, 3.], n), n_vis))).clip(0, 9.5).alias("edss"),
    ).with_columns((pl.Series(np.repeat(start, n_vis)) + pl.col("off")).alias("day")).filter(pl.col("day") <= REF_DAY)
    m = visits.height
    visits = visits.select(
        pl.col("i"),
        _date(pl.col("day")).alias("visit_date"),
        pl.when(pl.Series(rng.random(m) < .1)).then(None).otherwise(pl.col("edss")).alias("edss"),
        pl.when(pl.Series(rng.random(m) < .45)).then(None).otherwise(
            ((100 - pl.col("edss") * 9) / 10).round(0).clip(1, 10).cast(pl.Int64) * 10).alias("karnofsky"),
        pl.when(pl.Series(rng.random(m) < .3)).then(None).otherwise(
            (pl.col("w0") + pl.Series(rng.normal(0, 2, m))).round(1)).alias("weight_kg"),
    )

    # Relapses: a few per patient, more in relapsing courses.
    n_rel = rng.poisson(np.where((patients["ms_course"] == "RRMS").fill_null(False).to_numpy(), 2.0, 0.6))
    rp = np.repeat(idx, n_rel)
    relapses = pl.DataFrame({"i": rp, "day": np.repeat(onset, n_rel) + (rng.random(rp.size) * np.repeat(REF_DAY - onset, n_rel)).astype(np.int64)})
    relapses = relapses.select("i", _date(pl.col("day")).alias("onset_date"))

    # Treatments: 0-4 sequential episodes, escalating to second line.
    n_tr = rng.choice([0, 1, 2, 3, 4], n, p=[.15, .35, .28, .15, .07])
    tp = np.repeat(idx, n_tr)
    k = pl.DataFrame({"i": tp}).select(pl.int_range(pl.len()).over("i").alias("k"))["k"].to_numpy()
    dur = (rng.uniform(0.2, 5.0, tp.size) * 365.25).astype(np.int64)
    gap = (rng.uniform(0, 0.5, tp.size) * 365.25).astype(np.int64)
    line2 = (k >= 1) & (rng.random(tp.size) < .7)
    drug = _where(line2, _pick(rng, SECOND_LINE, tp.size), _pick(rng, FIRST_LINE, tp.size))
    drug = _where(rng.random(tp.size) < .03, _pick(rng, ["Novantrone", "other", "Imuran"], tp.size), drug)
    treatments = pl.DataFrame({"i": tp, "k": k, "drug": drug, "dur": dur, "gap": gap}).with_columns(
        (pl.Series(np.repeat(diagnosis, n_tr)) + (pl.col("dur") + pl.col("gap")).cum_sum().over("i") - pl.col("dur")).alias("s"),
    ).with_columns((pl.col("s") + pl.col("dur")).alias("e")).filter(pl.col("s") <= REF_DAY)
    last = pl.col("k") == pl.col("k").max().over("i")
    treatments = treatments.select(
        "i", "drug", _date(pl.col("s")).alias("start_date"),
        pl.when((last & pl.Series(rng.random(treatments.height) < .7)) | (pl.col("e") > REF_DAY)).then(None)
        .otherwise(_date(pl.col("e"))).alias("end_date"))

    # Labs: 65 % of patients, 1-3 panels in the last two years, mixed units and ULNs.
    n_lab = np.where(rng.random(n) < .65, rng.integers(1, 4, n), 0)
    lp = np.repeat(idx, n_lab)
    lday = REF_DAY - rng.integers(0, 730, lp.size)
    panels = []
    spec = [("AST", ["U/L", "IU/L"], [.7, .3], 25, 40, None), ("ALT", ["U/L", "IU/L"], [.7, .3], 25, 40, None),
            ("TBIL", ["umol/L", "µmol/L", "mg/dL"], [.7, .15, .15], 10, 21, 17.1),
            ("CREAT", ["umol/L", "µmol/L", "mg/dL"], [.7, .1, .2], 75, 110, 88.4), ("HGB", ["g/L"], [1.], 135, 160, None)]
    for test, units, up, mean, uln, factor in spec:
        unit = _pick(rng, units, lp.size, up)
        value = rng.lognormal(np.log(mean), 0.35, lp.size) * np.where(rng.random(lp.size) < .01, 8, 1)
        ref = np.full(lp.size, float(uln))
        if factor:
            mg = unit == "mg/dL"
            value = np.where(mg, value / factor, value)
            ref = np.where(mg, ref / factor, ref)
        ref = np.where(rng.random(lp.size) < .35, np.nan, ref * rng.choice([0.9, 1.0, 1.1], lp.size))
        panels.append(pl.DataFrame({"i": lp, "sample_date": lday, "test": test, "value": np.round(value, 2),
                                    "unit": unit, "ref_high": np.round(ref, 2)}))
    labs = pl.concat(panels).with_columns(_date(pl.col("sample_date")).alias("sample_date"),
                                          pl.col("ref_high").fill_nan(None))

    # Cardiac and pulmonary function tests for about a quarter of the patients.
    fp = np.repeat(idx, np.where(rng.random(n) < .25, 1, 0))
    fday = REF_DAY - rng.integers(0, 700, fp.size)
    function_tests = pl.concat([
        pl.DataFrame({"i": fp, "test_date": fday, "test": t, "value": np.round(rng.normal(mu, sd, fp.size).clip(5, 99 if t == "LVEF" else 140), 1)})
        for t, mu, sd in (("LVEF", 60, 7), ("FEV1", 88, 14), ("DLCO", 84, 15))
    ]).with_columns(_date(pl.col("test_date")).alias("test_date"))

    # Comorbidities, malignancies and infections.
    n_c = rng.choice([0, 1, 2], n, p=[.7, .22, .08])
    cp = np.repeat(idx, n_c)
    c = cp.size
    cat = _pick(rng, ["malignancy", "infection", "psychiatric", "cardiac", "pulmonary", "hepatic", "renal", "other"], c,
                [.1, .25, .2, .1, .08, .07, .05, .15])
    cday = REF_DAY - rng.integers(0, 3650, c)
    ended = rng.random(c) < .5
    malignant = (cat == "malignancy").to_numpy()
    infection = (cat == "infection").to_numpy()
    conditions = pl.DataFrame({
        "i": cp, "code": _where(malignant, _pick(rng, ["C50.9", "C44.9", "C43.9", "C61"], c),
                               _pick(rng, ["J18.9", "F32.1", "I50.9", None], c)),
        "category": cat, "onset_date": cday, "end_date": np.where(ended, cday + rng.integers(10, 400, c), -10**6),
        "severity": _pick(rng, ["mild", "moderate", "severe", None], c, [.45, .3, .1, .15]),
        "infection_type": _where(infection, _pick(rng, ["bacterial", "fungal", "viral", None], c, [.5, .1, .3, .1]), None),
        "controlled": _where(infection, _pick(rng, ["Y", "N", None], c, [.7, .15, .15]), None),
        "impairs_consent": _pick(rng, ["Y", "N", None], c, [.03, .5, .47]),
    }).with_columns(_date(pl.col("onset_date")).alias("onset_date"),
                    pl.when(pl.col("end_date") > -10**6).then(_date(pl.col("end_date"))).alias("end_date"))

    # Additions to the contract, drawn from their own generator: the draws above stay as they were.
    rng13 = np.random.default_rng([seed, 13])
    death_day = patients["death_date"].cast(pl.Int32).to_numpy()  # null -> nan: no death
    female = (patients["sex"] == "F").fill_null(False).to_numpy()
    treatments = treatments.with_columns(stop_reason=stop_reasons(rng13, treatments, birth, female))
    mri = mri_scans(rng13, n, birth, diagnosis, death_day, relapses, treatments)

    ids = pl.Series("patient_id", pid)
    out = {"patients": patients}
    for name, frame in (("visits", visits), ("relapses", relapses), ("treatments", treatments), ("labs", labs),
                        ("function_tests", function_tests), ("conditions", conditions), ("mri", mri)):
        out[name] = frame.with_columns(ids.gather(frame["i"]).alias("patient_id")).select(
            "patient_id", *[col for col in frame.columns if col != "i"])
    return out


def _line(drug: pl.Expr) -> pl.Expr:
    """1 or 2 for the first- and second-line names the generator uses, 0 for the others."""
    return (pl.when(drug.is_in(FIRST_LINE)).then(1).when(drug.is_in(SECOND_LINE)).then(2).otherwise(0)
            .cast(pl.Int8))


def stop_reasons(rng, treatments: pl.DataFrame, birth: np.ndarray, female: np.ndarray) -> pl.Series:
    """Why each ended episode ended (null on ongoing ones and where not recorded).

    Inefficacy is common when a first-line drug is followed by a second-line one,
    cladribine and alemtuzumab mostly end as planned, and some women of
    childbearing age stop for a pregnancy. `treatments` is in patient, then start, order.
    """
    t = treatments.select(
        pl.col("end_date").is_not_null().alias("ended"),
        pl.when((_line(pl.col("drug")) == 1) & (_line(pl.col("drug").shift(-1).over("i")) == 2))
        .then(pl.lit("escalation")).when(pl.col("drug").is_in(PLANNED_COURSES)).then(pl.lit("planned_course"))
        .otherwise(pl.lit("other")).alias("kind"),
        pl.col("end_date").cast(pl.Int32).alias("end"), pl.col("i"))
    m = t.height
    kind = t["kind"].to_numpy()
    i = t["i"].to_numpy()
    cum = {k: np.cumsum(p) for k, p in STOP_P.items()}
    u = rng.random(m)
    pick = np.zeros(m, dtype=np.int64)
    for k, c in cum.items():
        mine = kind == k
        pick[mine] = np.minimum((u[mine, None] >= c[None, :-1]).sum(axis=1), len(STOP_CHOICES) - 1)
    age = (t["end"].fill_null(0).to_numpy() - birth[i]) / 365.25
    fertile = female[i] & (age >= 18) & (age <= 45)
    pregnant = fertile & (rng.random(m) < np.vectorize(PREGNANCY_P.get)(kind).astype(float))
    pick = np.where(pregnant, STOP_CHOICES.index("pregnancy"), pick)
    reason = pl.Series(STOP_CHOICES, dtype=pl.Utf8).gather(pick)
    return pl.select(pl.when(t["ended"]).then(reason)).to_series().alias("stop_reason")


def mri_scans(rng, n: int, birth: np.ndarray, diagnosis: np.ndarray, death_day: np.ndarray,
              relapses: pl.DataFrame, treatments: pl.DataFrame) -> pl.DataFrame:
    """MRI follow-up: a baseline scan near diagnosis, then every 6-24 months, and a scan after
    most relapses; up to the reference date or death. 85 % of patients have scans.

    gd_lesions: mostly 0, sometimes 1-5, more likely within 90 days after a relapse and
    on first-line than on second-line therapy; empty when no contrast was given.
    new_t2_lesions: empty on a patient's first scan and sometimes where no comparison
    was reported, otherwise mostly 0 and more likely positive with enhancing lesions.
    A few scans have both counts empty.
    """
    idx = np.arange(n)
    has = rng.random(n) < .85
    first = diagnosis + rng.integers(-120, 31, n)
    # Registries rarely hold scans from before the 1990s: earlier diagnoses start their record later.
    first = np.where(first < MRI_ERA, MRI_ERA + rng.integers(0, 3653, n), first)
    first = np.clip(first, birth + 1, REF_DAY)
    last = np.where(np.isnan(death_day), REF_DAY, np.nan_to_num(death_day, nan=REF_DAY)).astype(np.int64)
    last = np.minimum(last, REF_DAY)
    has &= first <= last
    # Routine scans: the gaps are at least 183 days, so span // 183 + 1 scans cover the span; the rest are cut.
    k = np.where(has, np.minimum((last - first) // 183 + 1, 40), 0)
    sp = np.repeat(idx, k)
    gap = rng.uniform(183, 730, sp.size).astype(np.int64)
    routine = pl.DataFrame({"i": sp, "gap": gap}).select(
        "i", (pl.Series(np.repeat(first, k)) + pl.col("gap").cum_sum().over("i") - pl.col("gap")).alias("day"))
    # A scan within a month after 60 % of the relapses that fall in the follow-up.
    r = relapses.select("i", pl.col("onset_date").cast(pl.Int64).alias("onset"))
    ri, onset = r["i"].to_numpy(), r["onset"].to_numpy()
    scan_day = onset + rng.integers(3, 31, ri.size)
    take = has[ri] & (onset >= first[ri]) & (scan_day <= last[ri]) & (rng.random(ri.size) < .6)
    extra = pl.DataFrame({"i": ri[take], "day": scan_day[take]})
    scans = pl.concat([routine.cast({"i": pl.Int64, "day": pl.Int64}), extra.cast({"i": pl.Int64, "day": pl.Int64})])
    scans = (scans.filter(pl.Series(scans["day"].to_numpy() <= last[scans["i"].to_numpy()]))
             .unique(["i", "day"]).sort("i", "day"))

    # Context of each scan: days since the latest relapse, the line of the therapy running then.
    pack = 1 << 20  # (patient, day) as one sortable key: days since 1970 + 2**19 fit in 20 bits

    def key(day: pl.Expr) -> pl.Expr:
        return pl.col("i").cast(pl.Int64) * pack + day.cast(pl.Int64) + (1 << 19)

    rel = r.select(key(pl.col("onset")).alias("key"), pl.col("i").alias("r_i"), pl.col("onset")).sort("key")
    ther = treatments.select(key(pl.col("start_date").cast(pl.Int64)).alias("key"), pl.col("i").alias("t_i"),
                             pl.col("end_date").cast(pl.Int64).alias("t_end"), _line(pl.col("drug")).alias("line")
                             ).sort("key")
    scans = (scans.with_columns(key(pl.col("day")).alias("key"))
             .join_asof(rel, on="key", strategy="backward")
             .join_asof(ther, on="key", strategy="backward")
             .select("i", "day",
                     ((pl.col("r_i") == pl.col("i")) & (pl.col("day") - pl.col("onset") <= 90)).fill_null(False)
                     .alias("near_relapse"),
                     pl.when((pl.col("t_i") == pl.col("i"))
                             & (pl.col("t_end").is_null() | (pl.col("day") <= pl.col("t_end"))))
                     .then(pl.col("line")).otherwise(-1).alias("line"),
                     (pl.col("day") == pl.col("day").min().over("i")).alias("first")))
    m = scans.height
    near, line, is_first = (scans[c].to_numpy() for c in ("near_relapse", "line", "first"))
    p_active = np.where(near, np.where(line == 2, .3, .5), np.select([line == 1, line == 2], [.12, .04], .15))
    active = rng.random(m) < p_active
    gd = np.where(active, 1 + np.minimum(rng.poisson(.9, m), 4), 0)
    gd = np.where(active & (rng.random(m) < .03), gd + rng.integers(1, 12, m), gd)  # now and then many
    new_t2 = np.where(rng.random(m) < np.where(active, .75, .08), 1 + np.minimum(rng.poisson(.8, m), 6), 0)
    no_contrast = rng.random(m) < .12
    no_comparison = is_first | (rng.random(m) < .08)
    neither = rng.random(m) < .04  # the scan is recorded, its counts are not
    return scans.select(
        "i", _date(pl.col("day")).alias("scan_date"),
        pl.when(pl.Series(no_contrast | neither)).then(None).otherwise(pl.Series(gd)).alias("gd_lesions"),
        pl.when(pl.Series(no_comparison | neither)).then(None).otherwise(pl.Series(new_t2)).alias("new_t2_lesions"))


def messy_stop_reasons(text: pl.DataFrame) -> pl.DataFrame:
    """A few stop reasons outside the contract's list on ended episodes, and a few on ongoing ones,
    at evenly spread rows (the same rows in every dialect)."""
    ended = text.select(pl.col("end_date").is_not_null() & pl.col("stop_reason").is_not_null()).to_series().arg_true()
    ongoing = text.select(pl.col("end_date").is_null()).to_series().arg_true()
    reason = text["stop_reason"].clone()
    for rows, values in ((ended, MESSY_STOP_REASONS), (ongoing, MESSY_ONGOING_REASONS)):
        if rows.len() >= len(values):
            at = rows.gather(np.linspace(0, rows.len() - 1, len(values) + 2).astype(np.int64)[1:-1])
            reason = reason.scatter(at, pl.Series(values, dtype=pl.Utf8))
    return text.with_columns(reason)


def bad_rows(dialect: str) -> dict[str, list[dict]]:
    """A handful of the messy rows a real export has (each quarantined, with a reason)."""
    d = (lambda iso: dt.date.fromisoformat(iso).strftime(DIALECTS[dialect]["date_format"]))
    num = (lambda x: x.replace(".", ",")) if dialect == "regional" else (lambda x: x)
    return {
        "patients": [
            {"patient_id": "P9000001", "site_id": "SITE01", "sex": "F", "birth_date": "1985-02-30", "ms_course": "RRMS"},
            {"patient_id": "P9000002", "site_id": "", "sex": "Q", "birth_date": d("1979-05-01"), "ms_course": "RRMS"},
            {"patient_id": "P9000003", "site_id": "SITE02", "sex": "M", "birth_date": d("1980-01-01"), "ms_course": "RRMS"},
            {"patient_id": "P9000003", "site_id": "SITE03", "sex": "M", "birth_date": d("1980-01-01"), "ms_course": "RRMS"},
        ],
        "visits": [
            {"patient_id": "P0000001", "visit_date": d("2025-06-01"), "edss": num("3.25")},
            {"patient_id": "P0000002", "visit_date": d("2025-06-01"), "edss": num("4.0"), "weight_kg": num("12.5")},
            {"patient_id": "X404", "visit_date": d("2025-06-01"), "edss": num("2.0")},
            {"patient_id": "P9000003", "visit_date": d("2025-06-01"), "edss": num("2.0")},
        ],
        "treatments": [
            {"patient_id": "P0000003", "drug": "Zinbryta", "start_date": d("2018-01-01")},
            {"patient_id": "P0000004", "drug": "Tysabri", "start_date": d("2020-01-01"), "end_date": d("2019-01-01")},
        ],
        "labs": [
            {"patient_id": "P0000005", "sample_date": d("2026-09-01"), "test": "CREAT", "value": num("80"), "unit": "mmol/L"},
        ],
        "mri": [
            {"patient_id": "P0000006", "scan_date": d("2025-03-01"), "gd_lesions": num("1.5")},
            {"patient_id": "P0000006", "scan_date": d("2025-03-02"), "gd_lesions": "0", "new_t2_lesions": "1000"},
            {"patient_id": "P0000007", "scan_date": "", "gd_lesions": "0"},
            {"patient_id": "X405", "scan_date": d("2025-06-01"), "gd_lesions": "0", "new_t2_lesions": "0"},
        ],
    }


def to_strings(frame: pl.DataFrame, dialect: str) -> pl.DataFrame:
    """Every column as the text the registry's spreadsheet would write."""
    dd = DIALECTS[dialect]
    cols = []
    for name, dtype in frame.schema.items():
        c = pl.col(name)
        if dtype == pl.Date:
            c = c.dt.strftime(dd["date_format"])
        elif dtype.is_float():
            c = c.cast(pl.Utf8)
            if dd["decimal"] == ",":
                c = c.str.replace(".", ",", literal=True)
        else:
            c = c.cast(pl.Utf8)
        cols.append(c.alias(name))
    return frame.select(cols)


def write_export(tables: dict[str, pl.DataFrame], out: Path, dialect: str = "default",
                 with_bad_rows: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    dd = DIALECTS[dialect]
    extra = bad_rows(dialect) if with_bad_rows else {}
    for name, frame in tables.items():
        text = to_strings(frame, dialect)
        if extra.get(name):
            bad = pl.DataFrame(extra[name], schema={c: pl.Utf8 for c in text.columns} | {}, strict=False)
            text = pl.concat([text, bad.select(text.columns)], how="vertical")
            if name == "visits":  # an exact duplicate row, dropped and counted
                text = pl.concat([text, text.slice(10, 1)])
        if with_bad_rows and name == "treatments" and "stop_reason" in text.columns:
            text = messy_stop_reasons(text)
        csv = text.write_csv(separator=dd["separator"], null_value="")
        (out / f"{name}.csv").write_bytes(csv.encode(dd["encoding"]))
    if dialect != "default":
        sep = "\\t" if dd["separator"] == "\t" else dd["separator"]
        (out / "export.toml").write_text(
            f'delimiter = "{sep}"\ndecimal = "{dd["decimal"]}"\ndate_format = "{dd["date_format"]}"\n'
            f'encoding = "{dd["encoding"]}"\n', "utf-8")


def write_msda(tables: dict[str, pl.DataFrame], out: Path, with_bad_rows: bool = False) -> None:
    """The registry as an MSDA Core Dataset folder (pipeline/inputs/msda_write.py): dates mixed ISO and
    day first, a BOM on patient.csv, the npt and symptom files with their headers only. `with_bad_rows`:
    the contract's messy rows, mapped as the CDS carries them."""
    from pipeline.core.vocabulary import load_vocabulary
    from pipeline.inputs import msda_write

    text = {name: to_strings(frame, "default") for name, frame in tables.items()}
    if with_bad_rows:
        for name, rows in bad_rows("default").items():
            if rows and name in text:
                bad = pl.DataFrame(rows, schema={c: pl.Utf8 for c in text[name].columns}, strict=False)
                text[name] = pl.concat([text[name], bad.select(text[name].columns)], how="vertical")
    files = msda_write.to_cds(text, load_vocabulary(), "mixed", visit_date=REF.isoformat())
    for name in ("npt", "symptom"):
        files[name] = pl.DataFrame(schema={c: pl.Utf8 for c in msda_write.HEADERS[name]})
    msda_write.write(files, out, bom=frozenset({"patient"}))


BLOCK = 1_000_000  # patients generated at a time: a 10M export never sits in memory whole


def block_seed(seed: int, b: int) -> int:
    """Block 0 keeps the seed, so an export of up to BLOCK patients is what one call to `generate` gives."""
    return seed + 1_000_003 * b


def write_blocks(n: int, seed: int, out: Path, block: int = BLOCK) -> int:
    """An export of n patients written block by block (default dialect, no bad rows): each block's
    patients are numbered on from the last and drawn from their own seed, and its rows appended to the
    files. Returns the rows written."""
    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    for b, first in enumerate(range(0, n, block)):
        tables = generate(min(block, n - first), block_seed(seed, b), first)
        for name, frame in tables.items():
            with (out / f"{name}.csv").open("wb" if b == 0 else "ab") as f:
                to_strings(frame, "default").write_csv(f, include_header=b == 0, null_value="")
        rows += sum(f.height for f in tables.values())
        del tables
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.synth", description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dialect", choices=sorted(DIALECTS), default="default")
    ap.add_argument("--with-bad-rows", action="store_true", help="add a handful of messy rows")
    ap.add_argument("--format", choices=["csv", "msda", "omop"], default="csv",
                    help="csv: the registry export contract (default); msda: the MSDA Core Dataset's files "
                         "(docs/msda.md; what the CDS cannot carry is left out); omop: an OMOP CDM 5.4 with the "
                         "vocabulary rows it uses (pipeline/inputs/omop/writer.py)")
    ap.add_argument("--omop-as", choices=["csv", "parquet", "duckdb"], default="parquet",
                    help="with --format omop: a folder of CSV or Parquet tables, or OUT/omop.duckdb "
                         "(OUT itself when it ends in .duckdb)")
    args = ap.parse_args(argv)
    import time
    t0 = time.perf_counter()
    if args.format == "omop":
        if args.dialect != "default" or args.with_bad_rows:
            ap.error("--format omop writes typed OMOP tables: --dialect and --with-bad-rows do not apply")
        from pipeline.inputs.omop import writer

        tables = generate(args.patients, args.seed)
        omop = writer.to_omop(tables)
        where = writer.write(omop, args.out, args.omop_as)
        print(f"wrote {where}: {args.patients:,} persons, {sum(f.height for f in omop.values()):,} OMOP rows "
              f"({args.omop_as}) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        return 0
    if args.format == "msda":
        if args.dialect != "default":
            ap.error("--dialect goes with --format csv (a CDS is semicolon-separated, ISO or day-first dates)")
        tables = generate(args.patients, args.seed)
        write_msda(tables, args.out, args.with_bad_rows)
        rows = sum(f.height for f in tables.values())
    elif args.patients > BLOCK and args.dialect == "default" and not args.with_bad_rows:
        rows = write_blocks(args.patients, args.seed, args.out)
    else:
        tables = generate(args.patients, args.seed)
        write_export(tables, args.out, args.dialect, args.with_bad_rows)
        rows = sum(f.height for f in tables.values())
    print(f"wrote {args.out}: {args.patients:,} patients, {rows:,} rows in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
