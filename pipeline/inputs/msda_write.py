"""Write contract tables as an MSDA Core Dataset folder (the inverse of pipeline/inputs/msda.py, where the
CDS can carry a fact): for `python -m pipeline.synth --format msda`, data_samples/msda/ and the tests.

Input: the contract's tables as text (the CSV contract's default dialect: ISO dates, `.` decimals), as
`pipeline.synth.to_strings` gives them. What the CDS cannot carry is left out (site, consent, death,
labs, function tests, condition codes and dates, Karnofsky, weight); codes are mapped to the CDS's
(docs/msda.md). Dates are written ISO, day first (unpadded: `4/3/2021`), or mixed row by row.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.core.vocabulary import DrugVocabulary

HEADERS = {
    "patient": ["patient_id", "date_visit", "date_birth", "sex", "residence", "race_ethnicity", "education",
                "employment", "smoking", "smoking_count", "ms_family"],
    "disease_history": ["patient_id", "date_visit", "date_diagnosis", "date_onset", "csf_olib", "ms_course"],
    "disease_status": ["patient_id", "date_visit", "ms_status_clin", "ms_status_pat", "edss_score", "pdds_score",
                       "t25fw", "ninehpt_right", "ninehpt_left", "vib_sense", "sdmt"],
    "relapses": ["patient_id", "date_visit", "relapse", "date_relapse", "relapse_treat", "relapse_recovery"],
    # The header case of the MSDA ETL's own sample.
    "mri": ["patient_id", "date_visit", "mri", "mri_region", "mri_date", "mri_gd_les", "mri_new_les_T1",
            "mri_new_les_T2"],
    "dmt": ["patient_id", "date_visit", "dmt_status", "dmt_type", "dmt_start", "dmt_stop", "dmt_stop_reas"],
    "comorbidities": ["patient_id", "date_visit", "comorbidity", "com_type", "com_system"],
    "npt": ["patient_id", "date_visit", "np_treat_type", "np_treat_start", "np_treat_stop"],
    "symptom": ["patient_id", "date_visit", "current_symptom", "sever_symp", "treat_symp"],
}
# Contract generic name -> CDS dmt_type, where they differ (the others are the same word).
DRUG_CODES = {"interferon_beta_1a": "interferon", "interferon_beta_1b": "interferon",
              "peginterferon_beta_1a": "peg_interferon", "divozilimab": "methotrexate", "other": "methotrexate"}
SAME_DRUGS = ["alemtuzumab", "azathioprine", "cladribine", "cyclophosphamide", "dimethyl_fumarate",
              "diroximel_fumarate", "fingolimod", "glatiramer_acetate", "mitoxantrone", "natalizumab", "ocrelizumab",
              "ofatumumab", "ozanimod", "ponesimod", "rituximab", "siponimod", "teriflunomide", "ublituximab"]
STOP_CODES = {"inefficacy": "stop_inefficacy", "adverse_event": "stop_intolerance",
              "patient_choice": "stop_patient_choice", "planned": "stop_other", "pregnancy": "stop_other",
              "other": "stop_other"}
COM_CODES = {"malignancy": "com_cancer", "psychiatric": "com_depression", "cardiac": "com_ischemic_heart",
             "pulmonary": "com_chronic_lung", "hepatic": "com_hepatitis", "infection": "com_autoimmune",
             "renal": "com_diabetes", "other": "com_hypertension"}
DATE_FORMS = ("iso", "day_first", "mixed")


def cds_date(expr: pl.Expr, form: str) -> pl.Expr:
    """An ISO date text written in `form`: iso, day_first (unpadded), or mixed (odd rows day first).
    A text that is not an ISO date is written as it is."""
    d = expr.str.to_date("%Y-%m-%d", strict=False)
    day_first = pl.concat_str([d.dt.day().cast(pl.Utf8), d.dt.month().cast(pl.Utf8), d.dt.year().cast(pl.Utf8)],
                              separator="/")
    if form == "iso":
        return expr
    pick = pl.lit(True) if form == "day_first" else (pl.int_range(pl.len()) % 2 == 1)
    return pl.when(pick & d.is_not_null()).then(day_first).otherwise(expr)


def _frame(rows: pl.DataFrame, name: str, **columns: pl.Expr) -> pl.DataFrame:
    return rows.select(*[(columns[c] if c in columns else pl.lit(None, pl.Utf8)).cast(pl.Utf8).alias(c)
                         for c in HEADERS[name]])


def to_cds(tables: dict[str, pl.DataFrame], vocabulary: DrugVocabulary, date_form: str = "mixed",
           visit_date: str | None = None) -> dict[str, pl.DataFrame]:
    """The CDS files (name -> text frame) of contract tables given as text. `visit_date` (ISO): the
    date_visit of the patient and disease_history rows (empty when None)."""
    def date(c: str) -> pl.Expr:
        return cds_date(pl.col(c), date_form)

    visit = cds_date(pl.lit(visit_date, pl.Utf8), date_form) if visit_date else pl.lit(None, pl.Utf8)
    out: dict[str, pl.DataFrame] = {}
    pid = pl.col("patient_id")
    if "patients" in tables:
        p = tables["patients"]
        sex = pl.col("sex").str.to_uppercase()
        out["patient"] = _frame(p, "patient", patient_id=pid, date_visit=visit, date_birth=date("birth_date"),
                                sex=pl.when(sex == "F").then(pl.lit("female")).when(sex == "M")
                                .then(pl.lit("male")).otherwise(pl.lit("unknown")))
        course = pl.col("ms_course").str.to_lowercase()
        out["disease_history"] = _frame(
            p, "disease_history", patient_id=pid, date_visit=visit, date_diagnosis=date("diagnosis_date"),
            date_onset=date("onset_date"), ms_course=pl.when(course == "unk").then(pl.lit("unknown")).otherwise(course))
    if "visits" in tables:
        out["disease_status"] = _frame(tables["visits"], "disease_status", patient_id=pid,
                                       date_visit=date("visit_date"), edss_score=pl.col("edss"))
    if "relapses" in tables:
        out["relapses"] = _frame(tables["relapses"], "relapses", patient_id=pid, date_visit=date("onset_date"),
                                 relapse=pl.lit("yes"), date_relapse=date("onset_date"))
    if "mri" in tables:
        out["mri"] = _frame(tables["mri"], "mri", patient_id=pid, date_visit=date("scan_date"), mri=pl.lit("yes"),
                            mri_region=pl.lit("mri_brain"), mri_date=date("scan_date"),
                            mri_gd_les=pl.col("gd_lesions"), mri_new_les_T2=pl.col("new_t2_lesions"))
    if "treatments" in tables:
        t = tables["treatments"]
        generic = vocabulary.generic(pl.col("drug"))
        code = (pl.when(generic.is_in(SAME_DRUGS)).then(generic)
                .otherwise(generic.replace_strict(DRUG_CODES, default=None, return_dtype=pl.Utf8)))
        reason = pl.col("stop_reason").str.to_lowercase() if "stop_reason" in t.columns else pl.lit(None, pl.Utf8)
        stop = pl.when(reason.is_null()).then(pl.lit(None, pl.Utf8)).otherwise(
            reason.replace_strict(STOP_CODES, default="stop_other", return_dtype=pl.Utf8))
        out["dmt"] = _frame(t, "dmt", patient_id=pid, date_visit=date("start_date"),
                            dmt_status=pl.when(pl.col("end_date").is_null()).then(pl.lit("current"))
                            .otherwise(pl.lit("previous")),
                            dmt_type=pl.coalesce(code, pl.col("drug")),  # a drug outside the vocabulary: as written
                            dmt_start=date("start_date"), dmt_stop=date("end_date"), dmt_stop_reas=stop)
    if "conditions" in tables:
        category = pl.col("category").str.to_lowercase()
        out["comorbidities"] = _frame(tables["conditions"], "comorbidities", patient_id=pid, comorbidity=pl.lit("yes"),
                                      com_type=category.replace_strict(COM_CODES, default=None, return_dtype=pl.Utf8))
    return out


def write(files: dict[str, pl.DataFrame], out: Path, bom: frozenset[str] = frozenset(),
          delimiter: str = ";") -> None:
    """The CDS files into `out` (`bom`: the files written with a byte-order mark)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in files.items():
        text = frame.write_csv(separator=delimiter, null_value="", line_terminator="\n")
        (out / f"{name}.csv").write_bytes(("\ufeff" if name in bom else "").encode() + text.encode("utf-8"))
