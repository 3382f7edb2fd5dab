"""An export of the CSV contract written as an OMOP CDM 5.4 (for the synthetic registry, tests and
benchmarks): one person per patient (person_id = the patient's number), every fact in its concept of
the profile, the MSDA ETL's conventions (course records and unknown dates as 1700-01-01, MRI counts in
`observation_source_value`, stop reasons as concept ids in text), and the vocabulary rows it uses
(`concept`, `concept_ancestor` with each concept its own descendant).

What OMOP does not carry is left out: consent and Karnofsky (unless the profile names a set),
function tests (unless the profile names their sets), condition severity, infection type, control
and consent capacity. Interferon beta-1b and peginterferon are written under the profile's
interferon concept (as the MSDA ETL does), divozilimab and `other` under concept 0 (not a DMT).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from pipeline.core.vocabulary import DrugVocabulary, load_vocabulary
from pipeline.inputs.omop.profile import Profile, load

SENTINEL = dt.date(1700, 1, 1)
FORMATS = ("csv", "parquet", "duckdb")
VOCAB_OF = {"person": "Gender", "drugs": "RxNorm", "labs": "LOINC", "weight_units": "UCUM", "lab_units": "UCUM",
            "function_tests": "LOINC"}
NO_EVIDENCE = 4211787  # "no evidence of": the MSDA ETL's concept of a lesion count of 0
TYPE_EHR = 32817  # type concept: EHR
# Generic names OMOP's MSDA lookup has no concept for, written as the profile's interferon concept.
AS_INTERFERON = ("peginterferon_beta_1a", "interferon_beta_1b")


def _first(profile: Profile, section: str) -> dict[str, int]:
    return {k: v[0] for k, v in profile[section].items() if isinstance(v, list) and v}


def _number(col: str) -> pl.Expr:
    """The patient's number: the digits of its id (P0000007 -> 7)."""
    return pl.col(col).str.extract(r"([0-9]+)", 1).cast(pl.Int64)


def to_omop(tables: dict[str, pl.DataFrame], profile: Profile | None = None,
            vocabulary: DrugVocabulary | None = None) -> dict[str, pl.DataFrame]:
    """OMOP tables of a typed export (as `pipeline.synth.generate` gives it, or `read_export`)."""
    profile = profile or load()
    vocabulary = vocabulary or load_vocabulary()
    used: dict[int, tuple[str, str]] = {}  # concept_id -> (name, vocabulary)
    for section, values in profile.sections.items():
        for key, ids in values.items():
            if isinstance(ids, list):
                for i in ids:
                    used.setdefault(i, (f"{section}: {key}", VOCAB_OF.get(section, "SNOMED")))
    p = tables["patients"]
    sites = p.select(pl.col("site_id").unique().sort()).with_row_index("care_site_id", offset=1) \
        .with_columns(pl.col("care_site_id").cast(pl.Int64))
    pid = _number("patient_id").alias("person_id")
    sex = _first(profile, "person")
    b = pl.col("birth_date")
    person = p.join(sites, on="site_id", how="left", maintain_order="left").select(
        pid, pl.col("sex").replace_strict({"F": sex["female"], "M": sex["male"]}, default=0, return_dtype=pl.Int64)
        .alias("gender_concept_id"),
        b.dt.year().alias("year_of_birth"), b.dt.month().cast(pl.Int32).alias("month_of_birth"),
        b.dt.day().cast(pl.Int32).alias("day_of_birth"), b.cast(pl.Datetime("us")).alias("birth_datetime"),
        pl.lit(0, pl.Int64).alias("race_concept_id"), pl.lit(0, pl.Int64).alias("ethnicity_concept_id"),
        pl.col("care_site_id"), pl.col("patient_id").alias("person_source_value"))
    death = p.filter(pl.col("death_date").is_not_null()).select(
        pid, pl.col("death_date"), pl.lit(TYPE_EHR, pl.Int64).alias("death_type_concept_id"))

    # condition_occurrence: course records (unknown date, as the MSDA ETL writes the current course),
    # relapses, comorbidities
    course = _first(profile, "course")
    cond = [p.filter(pl.col("ms_course").is_in(list(course))).select(
        pid, pl.col("ms_course").replace_strict(course, return_dtype=pl.Int64).alias("condition_concept_id"),
        pl.lit(SENTINEL).alias("condition_start_date"), pl.lit(None, pl.Date).alias("condition_end_date"),
        pl.lit(None, pl.Utf8).alias("condition_source_value"))]
    relapse = profile.ids("relapses", "onset")[0]
    cond.append(tables["relapses"].select(
        pid, pl.lit(relapse, pl.Int64).alias("condition_concept_id"), pl.col("onset_date").alias("condition_start_date"),
        pl.lit(None, pl.Date).alias("condition_end_date"), pl.lit(None, pl.Utf8).alias("condition_source_value")))
    cats = _first(profile, "categories")
    cond.append(tables["conditions"].select(
        pid, pl.col("category").str.to_lowercase().replace_strict(cats, default=0, return_dtype=pl.Int64)
        .alias("condition_concept_id"),
        pl.col("onset_date").fill_null(SENTINEL).alias("condition_start_date"),
        pl.col("end_date").alias("condition_end_date"), pl.col("code").alias("condition_source_value")))
    condition = _ids(pl.concat(cond).with_columns(
        pl.lit(TYPE_EHR, pl.Int64).alias("condition_type_concept_id"),
        pl.lit(0, pl.Int64).alias("condition_source_concept_id")), "condition_occurrence_id")

    # drug_exposure
    drugs = _first(profile, "drugs")
    for g in AS_INTERFERON:
        drugs.setdefault(g, drugs["interferon_beta_1a"])
    t = tables["treatments"]
    stop = {k: str(v) for k, v in _first(profile, "stop_reasons").items() if k != "unknown"}
    reason = pl.col("stop_reason").str.to_lowercase()
    drug = t.select(
        pid, vocabulary.generic(pl.col("drug")).replace_strict(drugs, default=0, return_dtype=pl.Int64)
        .alias("drug_concept_id"),
        pl.col("start_date").alias("drug_exposure_start_date"), pl.col("end_date").alias("drug_exposure_end_date"),
        pl.when(reason.is_in(list(stop))).then(reason.replace_strict(stop, default=None, return_dtype=pl.Utf8))
        .otherwise(pl.col("stop_reason")).alias("stop_reason"),
        pl.col("drug").alias("drug_source_value"), pl.lit(TYPE_EHR, pl.Int64).alias("drug_type_concept_id"))
    drug = _ids(drug, "drug_exposure_id")

    # measurement: EDSS (a visit with no value kept as an EDSS row with no value), weight, labs
    visits_p, labs_p, units = _first(profile, "visits"), _first(profile, "labs"), _first(profile, "lab_units")
    v = tables["visits"]
    meas = [v.filter(pl.col("edss").is_not_null() | pl.col("weight_kg").is_null()).select(
        pid, pl.lit(visits_p["edss"], pl.Int64).alias("measurement_concept_id"), pl.col("visit_date")
        .alias("measurement_date"), pl.col("edss").cast(pl.Float64).alias("value_as_number"),
        pl.lit(None, pl.Int64).alias("unit_concept_id"), pl.lit(None, pl.Float64).alias("range_high"),
        pl.lit("edss").alias("measurement_source_value")),
        v.filter(pl.col("weight_kg").is_not_null()).select(
        pid, pl.lit(visits_p["weight"], pl.Int64).alias("measurement_concept_id"),
        pl.col("visit_date").alias("measurement_date"), pl.col("weight_kg").cast(pl.Float64).alias("value_as_number"),
        pl.lit(_first(profile, "weight_units")["kg"], pl.Int64).alias("unit_concept_id"),
        pl.lit(None, pl.Float64).alias("range_high"), pl.lit("weight").alias("measurement_source_value"))]
    if "karnofsky" in visits_p:
        meas.append(v.filter(pl.col("karnofsky").is_not_null()).select(
            pid, pl.lit(visits_p["karnofsky"], pl.Int64).alias("measurement_concept_id"),
            pl.col("visit_date").alias("measurement_date"), pl.col("karnofsky").cast(pl.Float64).alias("value_as_number"),
            pl.lit(None, pl.Int64).alias("unit_concept_id"), pl.lit(None, pl.Float64).alias("range_high"),
            pl.lit("karnofsky").alias("measurement_source_value")))
    folded = {"u/l": units["U/L"], "iu/l": units["IU/L"], "mg/dl": units["mg/dL"], "umol/l": units["umol/L"],
              "µmol/l": units["umol/L"], "μmol/l": units["umol/L"]}
    lab = tables["labs"]
    meas.append(lab.select(
        pid, pl.col("test").str.to_uppercase().replace_strict(labs_p, default=0, return_dtype=pl.Int64)
        .alias("measurement_concept_id"), pl.col("sample_date").alias("measurement_date"),
        pl.col("value").cast(pl.Float64).alias("value_as_number"),
        pl.col("unit").str.to_lowercase().replace_strict(folded, default=0, return_dtype=pl.Int64)
        .alias("unit_concept_id"), pl.col("ref_high").cast(pl.Float64).alias("range_high"),
        pl.col("test").alias("measurement_source_value")))
    ft_p = _first(profile, "function_tests")
    if ft_p and "function_tests" in tables:
        ft = tables["function_tests"].filter(pl.col("test").str.to_uppercase().is_in(list(ft_p)))
        meas.append(ft.select(
            pid, pl.col("test").str.to_uppercase().replace_strict(ft_p, return_dtype=pl.Int64)
            .alias("measurement_concept_id"), pl.col("test_date").alias("measurement_date"),
            pl.col("value").cast(pl.Float64).alias("value_as_number"), pl.lit(None, pl.Int64).alias("unit_concept_id"),
            pl.lit(None, pl.Float64).alias("range_high"), pl.col("test").alias("measurement_source_value")))
    measurement = _ids(pl.concat(meas).with_columns(pl.lit(TYPE_EHR, pl.Int64).alias("measurement_type_concept_id")),
                       "measurement_id")

    # observation: diagnosis and onset dates, MRI counts in the source value (0 under "no evidence of")
    pat = profile["patients"]
    mri_p = profile["mri"]
    obs = [p.filter(pl.col(c).is_not_null()).select(
        pid, pl.lit(pat[k][0], pl.Int64).alias("observation_concept_id"), pl.col(c).alias("observation_date"),
        pl.lit(None, pl.Int64).alias("value_as_concept_id"), pl.lit(None, pl.Utf8).alias("observation_source_value"))
        for c, k in (("diagnosis_date", "diagnosis_observation"), ("onset_date", "onset_observation"))]
    if pat["consent"]:
        obs.append(p.filter(pl.col("research_consent").is_not_null()).select(
            pid, pl.lit(pat["consent"][0], pl.Int64).alias("observation_concept_id"),
            pl.coalesce("diagnosis_date", "birth_date", pl.lit(dt.date(1900, 1, 1))).alias("observation_date"),
            pl.col("research_consent").str.to_uppercase().replace_strict(
                {"Y": pat["consent_yes"][0], "N": pat["consent_no"][0]}, return_dtype=pl.Int64)
            .alias("value_as_concept_id"), pl.lit(None, pl.Utf8).alias("observation_source_value")))
    m = tables["mri"]
    for col, key in (("gd_lesions", "gd_lesions"), ("new_t2_lesions", "new_t2_lesions")):
        obs.append(m.filter(pl.col(col).is_not_null()).select(
            pid, pl.when(pl.col(col) == 0).then(pl.lit(NO_EVIDENCE, pl.Int64)).otherwise(pl.lit(0, pl.Int64))
            .alias("observation_concept_id"), pl.col("scan_date").alias("observation_date"),
            pl.lit(None, pl.Int64).alias("value_as_concept_id"),
            pl.format("{}{}", pl.lit(mri_p[key]), pl.col(col).cast(pl.Int64)).alias("observation_source_value")))
    observation = _ids(pl.concat(obs).with_columns(pl.lit(TYPE_EHR, pl.Int64).alias("observation_type_concept_id")),
                       "observation_id")
    used.setdefault(NO_EVIDENCE, ("No evidence of", "SNOMED"))
    used.setdefault(0, ("No matching concept", "None"))
    for i in (TYPE_EHR,):
        used.setdefault(i, ("EHR", "Type Concept"))
    concept = pl.DataFrame({"concept_id": list(used), "concept_name": [n for n, _ in used.values()],
                            "vocabulary_id": [v for _, v in used.values()]},
                           schema={"concept_id": pl.Int64, "concept_name": pl.Utf8, "vocabulary_id": pl.Utf8}) \
        .with_columns(pl.lit("Condition").alias("domain_id"), pl.lit("S").alias("standard_concept"),
                      pl.col("concept_id").cast(pl.Utf8).alias("concept_code")).sort("concept_id")
    ancestor = concept.select(pl.col("concept_id").alias("ancestor_concept_id"),
                              pl.col("concept_id").alias("descendant_concept_id"),
                              pl.lit(0, pl.Int32).alias("min_levels_of_separation"),
                              pl.lit(0, pl.Int32).alias("max_levels_of_separation"))
    cdm_source = pl.DataFrame({"cdm_source_name": ["msfeas synthetic registry"], "cdm_source_abbreviation": ["msfeas"],
                               "cdm_version": ["5.4"], "source_release_date": [dt.date(2026, 11, 1)]})
    return {"person": person, "death": death, "condition_occurrence": condition, "drug_exposure": drug,
            "measurement": measurement, "observation": observation, "cdm_source": cdm_source,
            "concept": concept, "concept_ancestor": ancestor}


def _ids(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    return frame.with_row_index(name, offset=1).with_columns(pl.col(name).cast(pl.Int64))


def write(omop: dict[str, pl.DataFrame], out: Path, fmt: str) -> Path:
    """The OMOP tables as a folder of CSV or Parquet files, or a DuckDB file (`out` then ends `.duckdb`,
    or is a folder that receives `omop.duckdb`). Returns what was written."""
    if fmt == "duckdb":
        import duckdb

        target = out if out.suffix == ".duckdb" else out / "omop.duckdb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        con = duckdb.connect(str(target))
        try:
            for name, frame in omop.items():
                arrow = frame.to_arrow()  # noqa: F841 - read by name in the statement
                con.sql(f"CREATE TABLE {name} AS SELECT * FROM arrow")
        finally:
            con.close()
        return target
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in omop.items():
        if fmt == "parquet":
            frame.write_parquet(out / f"{name}.parquet")
        else:
            frame.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S")) \
                .write_csv(out / f"{name}.csv", null_value="", date_format="%Y-%m-%d")
    return out


def read_export(folder: Path) -> dict[str, pl.DataFrame]:
    """A CSV export folder of the default dialect as typed frames (for writing it as OMOP)."""
    import schemas

    typ = {"str": pl.Utf8, "date": pl.Date, "float": pl.Float64, "int": pl.Int64}
    out = {}
    for table, cols in schemas.TABLES.items():
        path = folder / f"{table}.csv"
        if not path.is_file():
            out[table] = pl.DataFrame(schema={c.name: typ[c.type] for c in cols})
            continue
        raw = pl.read_csv(path, infer_schema=False)
        def parse(name: str, kind: str) -> pl.Expr:
            c = pl.col(name).str.strip_chars()
            return c.str.to_date("%Y-%m-%d", strict=False) if kind == "date" else c.cast(typ[kind], strict=False)
        out[table] = raw.select([parse(c.name, c.type).alias(c.name) if c.name in raw.columns
                                 else pl.lit(None, typ[c.type]).alias(c.name) for c in cols])
    return out
