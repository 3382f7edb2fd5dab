"""An OMOP CDM 5.4 source read into the validated registry the CSV contract gives.

Each contract table is built from the OMOP rows its profile maps (pushed-down queries: only those
rows and columns are read), as the raw text of its contract columns, and then validated exactly as
an export's file is (`pipeline.inputs.ingest.ingest_tables`): the same row rules, quarantine,
duplicates and accounting. The OMOP side of the accounting (rows read per OMOP table, rows used per
msfeas table, rows passed over by reason, the most frequent unmapped concepts) is kept in
`Registry.source`. Vectorised throughout: no Python loop over rows.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import polars as pl

from pipeline.core.dialect import Dialect
from pipeline.core.errors import FatalInputError
from pipeline.core.vocabulary import DrugVocabulary
from pipeline.inputs import shards
from pipeline.inputs.omop.profile import Profile, load
from pipeline.inputs.omop.sources import open_source
from pipeline.inputs.omop.tables import COLUMNS, Source, sql_ids
from pipeline.inputs.registry import Registry

SENTINEL = dt.date(1700, 1, 1)  # the MSDA ETL's unknown date
DEATH_UNKNOWN = dt.date(1900, 1, 1)  # a death with an unknown date: before any D
TOP = 10  # unmapped concepts listed per domain
COURSE_ORDER = ("RIS", "CIS", "RRMS", "SPMS", "PPMS")  # a same-day tie takes the later
ICD10 = r"(?i)^[A-Z][0-9]{2}\.?[0-9A-Z]{0,4}$"
LB = 0.45359237
# An absent OMOP clinical table leaves the contract tables it feeds absent: measurement -> visits, labs,
# function_tests; condition_occurrence -> relapses, conditions; observation -> mri; drug_exposure -> treatments.
# Passed-over reasons, as the accounting names them.
NOT_IN_PROFILE, NOT_DMT, UNIT, UNKNOWN_DATE, AFTER_D = (
    "concept not in the profile", "drug not a DMT", "unit not mapped", "unknown date", "after D")


class Accounting:
    """Per OMOP table: rows read, rows used per msfeas table, rows passed over by reason."""

    def __init__(self):
        self.tables: dict[str, dict] = {}
        self.unmapped: dict[str, list[dict]] = {}
        self.notes: list[str] = []

    def table(self, name: str, rows_read: int) -> dict:
        t = self.tables.setdefault(name, {"rows_read": 0, "used": {}, "passed_over": {}})
        t["rows_read"] += int(rows_read)
        return t

    def used(self, name: str, table: str, n: int) -> None:
        if n:
            u = self.tables[name]["used"]
            u[table] = u.get(table, 0) + int(n)

    def passed(self, name: str, reason: str, n: int) -> None:
        if n:
            p = self.tables[name]["passed_over"]
            p[reason] = p.get(reason, 0) + int(n)

    def as_dict(self) -> dict:
        return {"tables": self.tables, "unmapped": self.unmapped, "notes": self.notes}


class _Sets:
    """The profile's concept sets, with their descendants when the source holds concept_ancestor."""

    def __init__(self, profile: Profile, src: Source, acc: Accounting):
        self.profile = profile
        ids = profile.all_ids()
        self.desc = pl.DataFrame(schema={"a": pl.Int64, "d": pl.Int64})
        self.with_vocab = src.has("concept")
        self.warnings: list[str] = []
        if src.has("concept_ancestor") and ids:
            self.desc = src.query(f"SELECT ancestor_concept_id AS a, descendant_concept_id AS d FROM "
                                  f"{src.tables['concept_ancestor']} WHERE ancestor_concept_id IN {sql_ids(ids)}") \
                .select(pl.col("a").cast(pl.Int64), pl.col("d").cast(pl.Int64))
            acc.notes.append("concept sets hold their descendants (concept_ancestor)")
        else:
            acc.notes.append("concept sets hold only the ids listed (no concept_ancestor in the source)")
        if self.with_vocab and ids:
            known = set(src.query(f"SELECT concept_id FROM {src.tables['concept']} WHERE concept_id IN "
                                  f"{sql_ids(ids)}")["concept_id"].to_list())
            for section, values in profile.sections.items():
                for key, value in values.items():
                    if isinstance(value, list) and value and section != "stop_reasons" \
                            and not set(value) & known:
                        self.warnings.append(f"OMOP profile {profile.file}: the set '{section}.{key}' matches no "
                                             f"concept of the source's vocabulary")

    def get(self, section: str, key: str | None = None) -> list[int]:
        ids = self.profile.ids(section, key)
        if not ids:
            return []
        more = self.desc.filter(pl.col("a").is_in(ids))["d"].to_list()
        return sorted(set(ids) | set(more))

    def mapping(self, section: str, keys=None) -> pl.DataFrame:
        """concept_id -> key (the first key, in the profile's order, whose set holds it)."""
        rows = []
        for key in keys or self.profile[section]:
            ids = self.get(section, key)
            if ids:
                rows.append(pl.DataFrame({"concept_id": ids, "key": [key] * len(ids)},
                                         schema={"concept_id": pl.Int64, "key": pl.Utf8}))
        if not rows:
            return pl.DataFrame(schema={"concept_id": pl.Int64, "key": pl.Utf8})
        return pl.concat(rows).unique("concept_id", keep="first", maintain_order=True)


def _date(col: str) -> pl.Expr:
    """A date with the sentinel as empty."""
    c = pl.col(col).cast(pl.Date)
    return pl.when(c == SENTINEL).then(None).otherwise(c)


def _iso(e: pl.Expr) -> pl.Expr:
    return e.dt.strftime("%Y-%m-%d")


def _ymd(y: pl.Expr, m: pl.Expr, d: pl.Expr) -> pl.Expr:
    """The date of year, month and day; empty when any is missing or they make no date (month 13, 31 February)."""
    text = pl.format("{}-{}-{}", y.cast(pl.Utf8).str.zfill(4), m.cast(pl.Utf8).str.zfill(2),
                     d.cast(pl.Utf8).str.zfill(2))
    return text.str.to_date("%Y-%m-%d", strict=False)


def _day_key() -> pl.Expr:
    """One integer per (person, date), in their order: grouping and sorting on it is much faster than on both."""
    return (pl.col("person_id").cast(pl.Int64) * 1_000_000 + pl.col("day").cast(pl.Int32).cast(pl.Int64)
            + 500_000).alias("_k")


def _text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as the text an export would hold (ISO dates, `.` decimals)."""
    return frame.select([_iso(pl.col(n)).alias(n) if t == pl.Date else pl.col(n).cast(pl.Utf8)
                         for n, t in frame.schema.items()])


def _all_sentinel(src: Source, frame: pl.DataFrame, table: str, column: str) -> None:
    if frame.height and (frame[column].cast(pl.Date) == SENTINEL).all():
        raise FatalInputError(f"{src.label}: table {table}", f"every {column} of its {frame.height:,} rows read is "
                              f"1700-01-01 (the MSDA ETL's mark of an unknown date): no row can be dated",
                              column=column)


def _counts(src: Source, table: str, concept: str, mapped_where: str) -> pl.DataFrame:
    """concept_id, rows of the rows NOT selected by `mapped_where` (pushed down as an aggregate)."""
    return src.query(f"SELECT {concept} AS concept_id, count(*) AS n FROM {src.tables[table]} "
                     f"WHERE NOT ({mapped_where}) OR {concept} IS NULL GROUP BY {concept}") \
        .select(pl.col("concept_id").cast(pl.Int64), pl.col("n").cast(pl.Int64))


def _top(src: Source, counts: pl.DataFrame, acc: Accounting, domain: str) -> None:
    top = counts.sort(["n", "concept_id"], descending=[True, False], nulls_last=True).head(TOP)
    names: dict[int, str] = {}
    if src.has("concept") and top.height:
        ids = [i for i in top["concept_id"].to_list() if i is not None]
        if ids:
            found = src.query(f"SELECT concept_id, concept_name FROM {src.tables['concept']} "
                              f"WHERE concept_id IN {sql_ids(ids)}")
            names = dict(zip(found["concept_id"].cast(pl.Int64).to_list(), found["concept_name"].to_list()))
    acc.unmapped[domain] = [{"concept_id": r["concept_id"], "name": names.get(r["concept_id"]), "rows": r["n"]}
                            for r in top.iter_rows(named=True)]


def _read_mapped(src: Source, acc: Accounting, table: str, concept: str, where: str, reason: str, domain: str,
                 date: str) -> pl.DataFrame:
    """The rows of `table` that `where` selects (the profile's concepts), with the table's accounting: the
    rows left are counted on the server by concept, passed over for `reason`, and the most frequent of them
    named for `domain`; a table whose every `date` read is the ETL's 1700-01-01 is fatal."""
    frame = _select(src, table, list(_cols(table)), where)
    rest = _counts(src, table, concept, where)
    acc.table(table, frame.height + int(rest["n"].sum()))
    acc.passed(table, reason, int(rest["n"].sum()))
    _top(src, rest, acc, domain)
    _all_sentinel(src, frame, table, date)
    return frame


def _select(src: Source, table: str, columns: list[str], where: str | None = None) -> pl.DataFrame:
    cols = ", ".join(src.col(table, c) for c in columns)
    return src.query(f"SELECT {cols} FROM {src.tables[table]}" + (f" WHERE {where}" if where else ""))


def read(location: str | Path, vocabulary: DrugVocabulary, *, as_of: dt.date, today: dt.date,
         profile: Profile | None = None, cdm_schema: str | None = None, vocab_schema: str | None = None,
         max_reject: float = 0.05, spill: Path | None = None,
         per_shard: int = shards.PATIENTS_PER_SHARD) -> Registry:
    """The validated registry of the OMOP source at `location` (see the module's doc)."""
    from pipeline.inputs.ingest import TableFrame, ingest_tables

    profile = profile or load()
    t0 = time.perf_counter()
    src = open_source(location, cdm_schema, vocab_schema)
    try:
        frames, acc, warnings, intervals = _map(src, profile, as_of)
        meta = src.describe()
        if src.has("cdm_source"):
            row = _select(src, "cdm_source", ["cdm_source_name", "cdm_source_abbreviation", "cdm_version"]).head(1)
            if row.height:
                meta["cdm_source"] = {k: (str(v) if v is not None else None) for k, v in row.row(0, named=True).items()}
    finally:
        src.close()
    read_seconds = time.perf_counter() - t0
    given = {t: TableFrame(label, f) for t, (label, f) in frames.items()}
    registry = ingest_tables(given, Dialect(), vocabulary, today=today, max_reject=max_reject, spill=spill,
                             per_shard=per_shard)
    registry.read_seconds = read_seconds
    registry.source = {**meta, "profile": profile.file, "omop": acc.as_dict(), "warnings": warnings}
    if intervals.height:
        registry.birth_intervals = intervals
    return registry


def _map(src: Source, profile: Profile, as_of: dt.date) -> tuple[dict[str, tuple[str, pl.DataFrame]], Accounting,
                                                                  list[str], pl.DataFrame]:
    acc = Accounting()
    sets = _Sets(profile, src, acc)
    out: dict[str, tuple[str, pl.DataFrame]] = {}
    pid = pl.col("person_id").cast(pl.Int64).cast(pl.Utf8).alias("patient_id")

    # person -> patients
    person = _select(src, "person", list(_cols("person")))
    acc.table("person", person.height)
    female, male = sets.get("person", "female"), sets.get("person", "male")
    g = pl.col("gender_concept_id").cast(pl.Int64)
    y, m, d = (pl.col(c).cast(pl.Int32) for c in ("year_of_birth", "month_of_birth", "day_of_birth"))
    exact = _ymd(y, m, d)
    bdt = pl.col("birth_datetime").cast(pl.Datetime).dt.date()
    birth = pl.when(bdt.is_not_null() & (bdt != SENTINEL)).then(bdt) \
        .when(y.is_not_null() & m.is_not_null() & d.is_not_null()).then(exact).otherwise(None)
    patients = person.select(
        pl.col("person_id").cast(pl.Int64), pid,
        pl.col("care_site_id").cast(pl.Int64).cast(pl.Utf8).fill_null("unassigned").alias("site_id"),
        pl.when(g.is_in(female)).then(pl.lit("F")).when(g.is_in(male)).then(pl.lit("M")).otherwise(pl.lit("U"))
        .alias("sex"),
        birth.alias("birth_date"),
        (birth.is_null() & _ymd(y, m.fill_null(1), pl.lit(1)).is_not_null()).alias("_partial"),
        _ymd(y, m.fill_null(1), pl.lit(1)).alias("birth_earliest"),
        _ymd(y, m.fill_null(12), pl.lit(1)).dt.month_end().alias("birth_latest"),
    )
    n_partial = int(patients["_partial"].sum())
    if n_partial:
        acc.used("person", "patients (birth date as an interval: year, or year and month)", n_partial)
    intervals = patients.filter(pl.col("_partial") & ~pl.col("patient_id").is_duplicated()) \
        .select("patient_id", "birth_earliest", "birth_latest")
    patients = patients.drop("_partial", "birth_earliest", "birth_latest")
    acc.used("person", "patients", person.height)

    def per_person(frame: pl.DataFrame, col: str, how: str, name: str) -> pl.DataFrame:
        agg = pl.col(col).min() if how == "min" else pl.col(col).max()
        return frame.drop_nulls(col).group_by("person_id").agg(agg.alias(name))

    # death
    if src.has("death"):
        death = _select(src, "death", ["person_id", "death_date"])
        acc.table("death", death.height)
        unknown = pl.col("death_date").cast(pl.Date) == SENTINEL
        n_unknown = int(death.select(unknown.sum()).item() or 0)
        acc.passed("death", "unknown date: read as a death before any D (1900-01-01)", n_unknown)
        death = death.select(pl.col("person_id").cast(pl.Int64),
                             pl.when(unknown).then(pl.lit(DEATH_UNKNOWN)).otherwise(pl.col("death_date").cast(pl.Date))
                             .alias("death_date"))
        acc.used("death", "patients", death.height - n_unknown)
        deaths = per_person(death, "death_date", "min", "death_date")
    else:
        deaths = pl.DataFrame(schema={"person_id": pl.Int64, "death_date": pl.Date})

    # condition_occurrence -> course, relapses, MS diagnosis fallback, conditions
    course = pl.DataFrame(schema={"person_id": pl.Int64, "ms_course": pl.Utf8})
    ms_dx = pl.DataFrame(schema={"person_id": pl.Int64, "dx_cond": pl.Date})
    conditions_parts = []
    if src.has("condition_occurrence"):
        cond = _select(src, "condition_occurrence", list(_cols("condition_occurrence")))
        acc.table("condition_occurrence", cond.height)
        _all_sentinel(src, cond, "condition_occurrence", "condition_start_date")
        cmap = sets.mapping("course", COURSE_ORDER).with_columns(
            pl.col("key").replace_strict({k: i for i, k in enumerate(COURSE_ORDER)}, return_dtype=pl.Int32)
            .alias("rank"))
        relapse_ids, ms_ids = sets.get("relapses", "onset"), sets.get("patients", "ms")
        cond = cond.with_columns(pl.col("person_id").cast(pl.Int64), pl.col("condition_concept_id").cast(pl.Int64),
                                 _date("condition_start_date").alias("start"), _date("condition_end_date").alias("end"))
        cc = pl.col("condition_concept_id")
        is_course = cc.is_in(cmap["concept_id"].implode())
        is_relapse = cc.is_in(relapse_ids) & ~is_course
        is_ms = cc.is_in(ms_ids)
        # course: latest on or before D; an unknown date ranks before every dated record
        crs = cond.filter(is_course).join(cmap.rename({"concept_id": "condition_concept_id"}),
                                          on="condition_concept_id")
        after = crs.filter(pl.col("start") > as_of)
        acc.passed("condition_occurrence", AFTER_D + " (course)", after.height)
        crs = crs.filter(pl.col("start").is_null() | (pl.col("start") <= as_of))
        acc.used("condition_occurrence", "patients (ms_course)", crs.height)
        course = (crs.sort(["person_id", "start", "rank"], nulls_last=False)
                  .group_by("person_id", maintain_order=True).agg(pl.col("key").last().alias("ms_course")))
        rel = cond.filter(is_relapse)
        acc.passed("condition_occurrence", UNKNOWN_DATE + " (relapse)", rel["start"].null_count())
        rel = rel.filter(pl.col("start").is_not_null())
        acc.used("condition_occurrence", "relapses", rel.height)
        out["relapses"] = ("omop condition_occurrence as relapses",
                           _text(rel.select(pid, pl.col("start").alias("onset_date"))))
        ms = cond.filter(is_ms & ~is_course & ~is_relapse)
        acc.used("condition_occurrence", "patients (diagnosis_date)", ms.height)
        ms_dx = per_person(cond.filter(is_ms & (pl.col("start") <= as_of)), "start", "min", "dx_cond")
        rest = cond.filter(~is_ms & ~is_course & ~is_relapse)
        # code: ICD-10 of the source concept when the vocabulary says so, else an ICD-10-like source value
        code = pl.when(pl.col("condition_source_value").str.strip_chars().str.contains(ICD10)) \
            .then(pl.col("condition_source_value").str.strip_chars())
        if src.has("concept") and rest.height and "condition_source_concept_id" in src.columns["condition_occurrence"]:
            icd = src.query(
                f"SELECT concept_id AS condition_source_concept_id, concept_code AS icd FROM {src.tables['concept']} "
                f"WHERE vocabulary_id LIKE 'ICD10%' AND concept_id IN (SELECT DISTINCT condition_source_concept_id "
                f"FROM {src.tables['condition_occurrence']} AS co)").with_columns(
                pl.col("condition_source_concept_id").cast(pl.Int64), pl.col("icd").cast(pl.Utf8))
            rest = rest.with_columns(pl.col("condition_source_concept_id").cast(pl.Int64)).join(
                icd, on="condition_source_concept_id", how="left", maintain_order="left")
            code = pl.coalesce(pl.col("icd"), code)
        cats = sets.mapping("categories").rename({"concept_id": "condition_concept_id", "key": "category"})
        rest = rest.join(cats, on="condition_concept_id", how="left", maintain_order="left")
        other = rest.filter(pl.col("category").is_null()).group_by(pl.col("condition_concept_id").alias("concept_id")) \
            .agg(pl.len().cast(pl.Int64).alias("n"))
        _top(src, other, acc, "condition")
        acc.used("condition_occurrence", "conditions", rest.height)
        conditions_parts.append(rest.select(pid, code.alias("code"), pl.col("category").fill_null("other"),
                                            pl.col("start").alias("onset_date"), pl.col("end").alias("end_date")))

    # drug_exposure -> treatments
    if src.has("drug_exposure"):
        dmap = sets.mapping("drugs")
        where = f"drug_concept_id IN {sql_ids(dmap['concept_id'].to_list())}"
        drugs = _read_mapped(src, acc, "drug_exposure", "drug_concept_id", where, NOT_DMT, "drug",
                             "drug_exposure_start_date")
        drugs = drugs.with_columns(pl.col("drug_concept_id").cast(pl.Int64), _date("drug_exposure_start_date")
                                   .alias("start")).join(dmap.rename({"concept_id": "drug_concept_id"}),
                                                         on="drug_concept_id", maintain_order="left")
        acc.passed("drug_exposure", UNKNOWN_DATE, drugs["start"].null_count())
        drugs = drugs.filter(pl.col("start").is_not_null())
        reasons = []
        for code, key in (("inefficacy", "inefficacy"), ("adverse_event", "adverse_event"),
                          ("patient_choice", "patient_choice"), ("other", "other")):
            reasons += [(str(i), code) for i in profile.ids("stop_reasons", key)]
        reasons += [(str(i), "") for i in profile.ids("stop_reasons", "unknown")]
        rmap = pl.DataFrame({"_sr": [r[0] for r in reasons], "_code": [r[1] for r in reasons]},
                            schema={"_sr": pl.Utf8, "_code": pl.Utf8})
        drugs = drugs.with_columns(pl.col("stop_reason").cast(pl.Utf8).str.strip_chars().alias("_sr")) \
            .join(rmap, on="_sr", how="left", maintain_order="left")
        stop = pl.when(pl.col("_code").is_not_null()).then(pl.col("_code")).otherwise(pl.col("_sr"))
        acc.used("drug_exposure", "treatments", drugs.height)
        out["treatments"] = ("omop drug_exposure as treatments", _text(drugs.select(
            pid, pl.col("key").alias("drug"), pl.col("start").alias("start_date"),
            _date("drug_exposure_end_date").alias("end_date"),
            pl.when(stop == "").then(None).otherwise(stop).alias("stop_reason"))))

    # measurement -> visits, labs, function_tests
    if src.has("measurement"):
        vmap = sets.mapping("visits")
        lmap = sets.mapping("labs")
        fmap = sets.mapping("function_tests")
        mapped = pl.concat([vmap, lmap, fmap])["concept_id"].to_list()
        where = f"measurement_concept_id IN {sql_ids(mapped)}"
        meas = _read_mapped(src, acc, "measurement", "measurement_concept_id", where, NOT_IN_PROFILE, "measurement",
                            "measurement_date")
        meas = meas.with_columns(pl.col("person_id").cast(pl.Int64), pl.col("measurement_concept_id").cast(pl.Int64),
                                 pl.col("unit_concept_id").cast(pl.Int64), _date("measurement_date").alias("day"),
                                 pl.col("value_as_number").cast(pl.Float64))
        acc.passed("measurement", UNKNOWN_DATE, meas["day"].null_count())
        meas = meas.filter(pl.col("day").is_not_null())
        unit_rows = []
        # visits: one per person and date of an EDSS, weight or Karnofsky measurement
        vis = meas.join(vmap.rename({"concept_id": "measurement_concept_id"}), on="measurement_concept_id")
        kg, lb = sets.get("weight_units", "kg"), sets.get("weight_units", "lb")
        u = pl.col("unit_concept_id")
        weight = pl.when(u.is_in(kg)).then(pl.col("value_as_number")) \
            .when(u.is_in(lb)).then(pl.col("value_as_number") * LB)
        bad_unit = (pl.col("key") == "weight") & ~(u.is_in(kg) | u.is_in(lb)).fill_null(False)
        unit_rows.append(vis.filter(bad_unit).select(u.alias("concept_id")))
        acc.passed("measurement", UNIT + " (weight)", int(vis.select(bad_unit.sum()).item() or 0))
        vis = vis.filter(~bad_unit)
        acc.used("measurement", "visits", vis.height)
        # plain aggregates of per-kind columns (a filter inside the aggregation is several times slower)
        key, v = pl.col("key"), pl.col("value_as_number")
        visits = vis.lazy().select(
            "person_id", "day", pl.when(key == "edss").then(v).alias("edss"),
            pl.when(key == "karnofsky").then(v).alias("karnofsky"),
            pl.when(key == "weight").then(weight).alias("weight_kg"),
        ).with_columns(_day_key()).sort("_k").group_by("_k", maintain_order=True).agg(
            pl.col("person_id").first(), pl.col("day").first(), pl.col("edss").max(), pl.col("karnofsky").max(),
            pl.col("weight_kg").max()).collect()
        out["visits"] = ("omop measurement as visits", _text(visits.select(
            pid, pl.col("day").alias("visit_date"), "edss",
            pl.col("karnofsky").round(0).cast(pl.Int64), "weight_kg")))
        # labs
        umap = sets.mapping("lab_units").rename({"concept_id": "unit_concept_id", "key": "unit"})
        lab = meas.join(lmap.rename({"concept_id": "measurement_concept_id"}), on="measurement_concept_id") \
            .join(umap, on="unit_concept_id", how="left", maintain_order="left")
        unit_rows.append(lab.filter(pl.col("unit").is_null()).select(u.alias("concept_id")))
        acc.passed("measurement", UNIT + " (labs)", lab["unit"].null_count())
        lab = lab.filter(pl.col("unit").is_not_null())
        acc.used("measurement", "labs", lab.height)
        out["labs"] = ("omop measurement as labs", _text(lab.select(
            pid, pl.col("day").alias("sample_date"), pl.col("key").alias("test"), pl.col("value_as_number")
            .alias("value"), "unit", pl.col("range_high").cast(pl.Float64).alias("ref_high"))))
        # function tests (absent when the profile names none)
        if fmap.height:
            ft = meas.join(fmap.rename({"concept_id": "measurement_concept_id"}), on="measurement_concept_id")
            acc.used("measurement", "function_tests", ft.height)
            out["function_tests"] = ("omop measurement as function_tests", _text(ft.select(
                pid, pl.col("day").alias("test_date"), pl.col("key").alias("test"),
                pl.col("value_as_number").alias("value"))))
        else:
            acc.notes.append("function_tests: absent (the profile's lvef, fev1 and dlco sets are empty)")
        units = pl.concat(unit_rows).group_by("concept_id").agg(pl.len().cast(pl.Int64).alias("n"))
        _top(src, units, acc, "unit")

    # observation -> diagnosis and onset dates, consent, comorbidities, mri
    dx_obs = pl.DataFrame(schema={"person_id": pl.Int64, "dx_obs": pl.Date})
    onset = pl.DataFrame(schema={"person_id": pl.Int64, "onset_date": pl.Date})
    consent = pl.DataFrame(schema={"person_id": pl.Int64, "research_consent": pl.Utf8})
    if src.has("observation"):
        dx_ids, on_ids = sets.get("patients", "diagnosis_observation"), sets.get("patients", "onset_observation")
        cons_ids, com_ids = sets.get("patients", "consent"), sets.get("comorbidities", "observation")
        prefixes = {k: profile["mri"][k].lower() for k in ("gd_lesions", "new_t2_lesions")}
        likes = " OR ".join(f"lower(observation_source_value) LIKE '{p.replace(chr(39), '')}%'"
                            for p in prefixes.values()) if "observation_source_value" in src.columns["observation"] \
            else "FALSE"
        where = f"observation_concept_id IN {sql_ids(dx_ids + on_ids + cons_ids + com_ids)} OR {likes}"
        obs = _read_mapped(src, acc, "observation", "observation_concept_id", where, NOT_IN_PROFILE, "observation",
                           "observation_date")
        oc = pl.col("observation_concept_id").cast(pl.Int64)
        sv = pl.col("observation_source_value").cast(pl.Utf8).str.strip_chars().str.to_lowercase()
        obs = obs.with_columns(pl.col("person_id").cast(pl.Int64), _date("observation_date").alias("day"),
                               sv.alias("sv"), oc.alias("oc"), pl.col("value_as_concept_id").cast(pl.Int64))
        gd = pl.col("sv").str.extract(f"^{_re(prefixes['gd_lesions'])}([0-9]+)$", 1).cast(pl.Int64, strict=False)
        t2 = pl.col("sv").str.extract(f"^{_re(prefixes['new_t2_lesions'])}([0-9]+)$", 1).cast(pl.Int64, strict=False)
        obs = obs.with_columns(gd.alias("gd"), t2.alias("t2"))
        is_mri = pl.col("gd").is_not_null() | pl.col("t2").is_not_null()
        mri = obs.filter(is_mri)
        acc.passed("observation", UNKNOWN_DATE + " (mri)", mri["day"].null_count())
        mri = mri.filter(pl.col("day").is_not_null())
        acc.used("observation", "mri", mri.height)
        scans = mri.lazy().with_columns(_day_key()).sort("_k").group_by("_k", maintain_order=True).agg(
            pl.col("person_id").first(), pl.col("day").first(), pl.col("gd").max().alias("gd_lesions"),
            pl.col("t2").max().alias("new_t2_lesions")).collect()
        out["mri"] = ("omop observation as mri", _text(scans.select(
            pid, pl.col("day").alias("scan_date"), "gd_lesions", "new_t2_lesions")))
        rest_obs = obs.filter(~is_mri)
        dated = rest_obs.filter(pl.col("day").is_not_null())
        late = dated.filter((pl.col("day") > as_of) & pl.col("oc").is_in(dx_ids + on_ids + cons_ids))
        acc.passed("observation", AFTER_D, late.height)
        acc.passed("observation", UNKNOWN_DATE, rest_obs.filter(pl.col("day").is_null()
                                                                & ~pl.col("oc").is_in(com_ids)).height)
        upto = dated.filter(pl.col("day") <= as_of)
        dx = upto.filter(pl.col("oc").is_in(dx_ids))
        dx_obs = per_person(dx, "day", "min", "dx_obs")
        on = upto.filter(pl.col("oc").is_in(on_ids))
        onset = per_person(on, "day", "min", "onset_date")
        acc.used("observation", "patients (diagnosis_date)", dx.height)
        acc.used("observation", "patients (onset_date)", on.height)
        yes, no = sets.get("patients", "consent_yes"), sets.get("patients", "consent_no")
        cons = upto.filter(pl.col("oc").is_in(cons_ids)).with_columns(
            pl.when(pl.col("value_as_concept_id").is_in(yes)).then(pl.lit("Y"))
            .when(pl.col("value_as_concept_id").is_in(no)).then(pl.lit("N")).alias("research_consent"))
        cons = cons.filter(pl.col("research_consent").is_not_null())
        acc.used("observation", "patients (research_consent)", cons.height)
        consent = cons.sort(["person_id", "day"]).group_by("person_id", maintain_order=True) \
            .agg(pl.col("research_consent").last())
        com = rest_obs.filter(pl.col("oc").is_in(com_ids))
        if com.height and src.has("condition_occurrence"):
            cats = sets.mapping("categories").rename({"concept_id": "value_as_concept_id", "key": "category"})
            com = com.join(cats, on="value_as_concept_id", how="left", maintain_order="left")
            acc.used("observation", "conditions", com.height)
            conditions_parts.append(com.select(pid, pl.lit(None, pl.Utf8).alias("code"),
                                               pl.col("category").fill_null("other"), pl.col("day").alias("onset_date"),
                                               pl.lit(None, pl.Date).alias("end_date")))
    if conditions_parts:
        out["conditions"] = ("omop condition_occurrence as conditions", _text(pl.concat(conditions_parts)))

    # patients: person with the dates and course the other tables give
    patients = (patients.join(deaths, on="person_id", how="left", maintain_order="left")
                .join(dx_obs, on="person_id", how="left", maintain_order="left")
                .join(ms_dx, on="person_id", how="left", maintain_order="left")
                .join(onset, on="person_id", how="left", maintain_order="left")
                .join(course, on="person_id", how="left", maintain_order="left")
                .join(consent, on="person_id", how="left", maintain_order="left"))
    out["patients"] = ("omop person as patients", _text(patients.select(
        "patient_id", "site_id", "sex", "birth_date", "onset_date",
        pl.coalesce("dx_obs", "dx_cond").alias("diagnosis_date"), pl.col("ms_course").fill_null("UNK"),
        "research_consent", "death_date")))
    return {t: out[t] for t in ("patients", "visits", "relapses", "treatments", "labs", "function_tests",
                                "conditions", "mri") if t in out}, acc, sets.warnings, intervals


def _cols(table: str):
    return COLUMNS[table]


def _re(text: str) -> str:
    return re.escape(text)
