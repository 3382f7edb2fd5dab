"""Read an MSDA Core Dataset (CDS) folder into the validated registry the CSV contract gives.

The CDS (the MS Data Alliance's data dictionary; /work/shared/spec/input-msda.md, docs/msda.md) is
nine semicolon-separated files. Each file read is mapped, with polars expressions (no loop over
rows), to contract-shaped raw string rows (`_line` of the CDS file, `_nfields`, one string column
per contract column: ISO dates, contract codes), and those are validated by the contract's own
steps (`pipeline.inputs.ingest.validate`): the same row rules, quarantine with `_line` and
`_reason`, duplicates and accounting. Rows of a CDS file that are not a contract row (a relapse
row saying `no`, an ahsct row, a scan row without a scan) are passed over and counted by reason.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import replace
from pathlib import Path

import polars as pl

from pipeline.core.dialect import Dialect
from pipeline.core.errors import FatalInputError, not_an_export_folder, some
from pipeline.core.vocabulary import DrugVocabulary
from pipeline.inputs import shards
from pipeline.inputs.ingest import REASON, _Source, find_files, validate
from pipeline.inputs.readcsv import LINE, NFIELDS, decode, read_csv_text, read_simple
from pipeline.inputs.registry import Registry
from schemas import TABLES, rules

FILES = ("patient", "disease_history", "disease_status", "relapses", "mri", "dmt", "comorbidities", "npt", "symptom")
NOT_READ = ("npt", "symptom")
# The columns read from each file; a file without one of its `REQUIRED` columns is fatal, the others
# may be left out (then empty on every row).
COLUMNS = {
    "patient": ["patient_id", "date_visit", "date_birth", "sex"],
    "disease_history": ["patient_id", "date_visit", "date_diagnosis", "date_onset", "ms_course"],
    "disease_status": ["patient_id", "date_visit", "edss_score"],
    "relapses": ["patient_id", "relapse", "date_relapse"],
    "mri": ["patient_id", "mri", "mri_region", "mri_date", "mri_gd_les", "mri_new_les_t2"],
    "dmt": ["patient_id", "dmt_type", "dmt_start", "dmt_stop", "dmt_stop_reas"],
    "comorbidities": ["patient_id", "comorbidity", "com_type"],
}
REQUIRED = {
    "patient": ["patient_id"], "disease_history": ["patient_id"], "disease_status": ["patient_id", "date_visit"],
    "relapses": ["patient_id", "relapse", "date_relapse"], "mri": ["patient_id", "mri_date"],
    "dmt": ["patient_id", "dmt_type", "dmt_start"], "comorbidities": ["patient_id", "comorbidity", "com_type"],
}
# Contract table <- the CDS file its rows come from (patients also take disease_history's facts).
TABLE_FILE = {"patients": "patient", "visits": "disease_status", "relapses": "relapses", "mri": "mri",
              "treatments": "dmt", "conditions": "comorbidities"}
# The contract column -> the CDS column it comes from, to name in quarantine reasons.
SOURCE_COLUMN = {
    "patients": {"birth_date": "date_birth", "onset_date": "disease_history.date_onset",
                 "diagnosis_date": "disease_history.date_diagnosis", "ms_course": "disease_history.ms_course"},
    "visits": {"visit_date": "date_visit", "edss": "edss_score"},
    "relapses": {"onset_date": "date_relapse"},
    "mri": {"scan_date": "mri_date", "gd_lesions": "mri_gd_les", "new_t2_lesions": "mri_new_les_t2"},
    "treatments": {"drug": "dmt_type", "start_date": "dmt_start", "end_date": "dmt_stop",
                   "stop_reason": "dmt_stop_reas"},
    "conditions": {"category": "com_type"},
}

COURSES = ["rrms", "spms", "ppms", "cis", "ris"]
DRUGS = {c: c for c in (
    "alemtuzumab", "azathioprine", "cladribine", "cyclophosphamide", "dimethyl_fumarate", "diroximel_fumarate",
    "fingolimod", "glatiramer_acetate", "mitoxantrone", "natalizumab", "ocrelizumab", "ofatumumab", "ozanimod",
    "ponesimod", "rituximab", "siponimod", "teriflunomide", "ublituximab")}
DRUGS |= {"interferon": "interferon_beta_1a", "peg_interferon": "peginterferon_beta_1a"}
DRUGS |= {c: "other" for c in ("corticosteroids", "immunoglobulin", "methotrexate", "minocycline",
                              "mycophenolate_mofetil", "fludarabine", "monomethyl_fumarate")}
NOT_DRUG_EPISODE = "ahsct"
STOP_REASONS = {
    "stop_inefficacy": "inefficacy", "stop_disease_activity": "inefficacy", "stop_progression": "inefficacy",
    "stop_intolerance": "adverse_event", "stop_contraindication": "adverse_event",
    "stop_patient_choice": "patient_choice",
    "stop_non_adherence": "other", "stop_financial": "other", "stop_other": "other",
}
STOP_UNKNOWN = "stop_unknown"
CATEGORIES = {"com_cancer": "malignancy", "com_chronic_lung": "pulmonary", "com_hepatitis": "hepatic"}
CATEGORIES |= {c: "psychiatric" for c in ("com_depression", "com_anxiety", "com_bipolar", "com_psychosis",
                                          "com_alc_abuse", "com_drug_abuse")}
CATEGORIES |= {c: "cardiac" for c in ("com_arrhythmia", "com_congestive_heart", "com_ischemic_heart")}

ISO = r"^\d{4}-\d{2}-\d{2}$"
DAY_FIRST = r"^\d{1,2}/\d{1,2}/\d{4}$"
CONTRACT_DATES = "%Y-%m-%d"  # the mapped rows' dates, whatever form each CDS value had


def iso_date(expr: pl.Expr) -> pl.Expr:
    """A CDS date as ISO text: ISO kept, day first (`04/03/2021`, `4/3/2021`) rewritten, each value on
    its own; anything else (a two-digit year, `15-05-1888`) kept as written, for the contract's date
    rule to quarantine with the value named."""
    day_first = expr.str.to_date("%d/%m/%Y", strict=False)
    return (pl.when(expr.str.contains(DAY_FIRST) & day_first.is_not_null())
            .then(day_first.dt.to_string(CONTRACT_DATES)).otherwise(expr))


def _date(expr: pl.Expr) -> pl.Expr:
    """A CDS date as a date (null when empty or not a date)."""
    return iso_date(expr).str.to_date(CONTRACT_DATES, strict=False)


def _code(name: str) -> pl.Expr:
    """A coded value compared in lower case, trimmed."""
    return pl.col(name).str.strip_chars().str.to_lowercase()


def _read(path: Path, name: str, dialect: Dialect) -> tuple[pl.DataFrame, int]:
    """A CDS file's rows as strings (`_line`, `_nfields`, its columns by lower-case name), and the
    header's field count. BOM or not, header case as found."""
    try:
        with path.open("rb") as fh:
            first = fh.readline().decode(dialect.encoding, "replace").lstrip("\ufeff")
        delimiter = dialect.delimiter
        if delimiter == ",":  # the contract's default: a CDS is semicolon-separated unless its header is not
            delimiter = ";" if ";" in first or "," not in first else ","
        utf8 = dialect.encoding.replace("-", "").replace("_", "").lower() in ("utf8", "utf8sig")
        # The fast reader parses every column: a projection would let a row with too many fields pass.
        raw = read_simple(path, delimiter, path.name) if utf8 else None
        if raw is None:  # a BOM, quotes, another codec: the careful reader
            raw = read_csv_text(decode(path.read_bytes(), dialect.encoding, path.name), delimiter, path.name)
    except (OSError, LookupError) as exc:
        raise FatalInputError(path.name, f"cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    missing = [c for c in REQUIRED.get(name, []) if c not in raw.header]
    if missing:
        raise FatalInputError(path.name, f"required column '{missing[0]}' is missing from the header "
                              f"(found: {some(h for h in raw.header if re.fullmatch(r'[a-z][a-z0-9_ ]{0,39}', h))})",
                              line=1, column=missing[0])
    frame = raw.frame.with_columns(pl.lit(None, pl.Utf8).alias(c) for c in COLUMNS.get(name, [])
                                   if c not in raw.header)
    return frame.select(LINE, NFIELDS, *COLUMNS.get(name, [])), raw.n_fields


def _count_rows(path: Path) -> int:
    """The non-blank lines after the header of a file that is not read (counted, not parsed)."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise FatalInputError(path.name, f"cannot be read: {exc.strerror}") from None
    return max(sum(1 for line in lines if line.strip()) - 1, 0)


def _contract(frame: pl.DataFrame, table: str, **columns: pl.Expr) -> pl.DataFrame:
    """`_line`, `_nfields` and the contract's columns of `table` in its order (those not given: empty)."""
    return frame.select(pl.col(LINE), pl.col(NFIELDS), *[
        (columns[c.name] if c.name in columns else pl.lit(None, pl.Utf8)).cast(pl.Utf8).alias(c.name)
        for c in TABLES[table]])


def _counts(reason: pl.Series) -> dict[str, int]:
    """Passed-over counts by reason (null reasons are rows used)."""
    counts = reason.drop_nulls().value_counts(sort=True)
    return {r: int(n) for r, n in counts.iter_rows()}


def _patients(p: pl.DataFrame, dh: pl.DataFrame | None, dh_fields: int, site: str,
              today: dt.date) -> tuple[pl.DataFrame, dict[str, int], dict[str, int] | None, int]:
    """The patients table's raw rows: each patient's latest `patient` row (by date_visit; an empty one
    oldest; a tie: the later line), with the facts of its latest `disease_history` rows."""
    pid = pl.col("patient_id")
    order = p.with_columns(_date(pl.col("date_visit")).alias("_vd")).sort(["_vd", LINE], nulls_last=False)
    latest = order.with_columns((pid.is_null() | pid.is_last_distinct()).alias("_keep"))
    passed = _counts(latest.select(pl.when(~pl.col("_keep")).then(
        pl.lit("an earlier patient row of the same patient (the latest by date_visit is read)")))
        .to_series())
    p = latest.filter("_keep").sort(LINE)
    dh_passed = None
    facts = pl.DataFrame(schema={"patient_id": pl.Utf8, "_onset": pl.Utf8, "_diagnosis": pl.Utf8, "_course": pl.Utf8})
    if dh is not None:
        vd = _date(pl.col("date_visit"))
        known = p["patient_id"].drop_nulls()
        why = (pl.when(pid.is_null()).then(pl.lit("empty patient_id"))
               .when(pl.col(NFIELDS) != dh_fields).then(pl.lit("a row with the wrong number of fields"))
               .when(~pid.is_in(known.implode())).then(pl.lit("patient_id not in patient.csv"))
               .when(vd > pl.lit(today)).then(pl.lit("date_visit after today")))
        dh = dh.with_columns(why.alias("_why"), vd.alias("_vd"))
        dh_passed = _counts(dh["_why"])
        course = _code("ms_course")
        used = (dh.filter(pl.col("_why").is_null()).sort(["_vd", LINE], nulls_last=False)
                .with_columns(iso_date(pl.col("date_onset")).alias("_onset"),
                              iso_date(pl.col("date_diagnosis")).alias("_diagnosis"),
                              pl.when(course.is_in(COURSES)).then(course.str.to_uppercase())
                              .when(course.is_not_null()).then(pl.lit("UNK")).alias("_course")))
        facts = used.group_by("patient_id", maintain_order=True).agg(
            *[pl.col(c).drop_nulls().last() for c in ("_onset", "_diagnosis", "_course")])
    p = p.join(facts, on="patient_id", how="left", maintain_order="left")
    sex = _code("sex")
    rows = _contract(p, "patients", patient_id=pid, site_id=pl.lit(site),
                     sex=pl.when(sex == "female").then(pl.lit("F")).when(sex == "male").then(pl.lit("M"))
                     .otherwise(pl.lit("U")),
                     birth_date=iso_date(pl.col("date_birth")), onset_date=pl.col("_onset"),
                     diagnosis_date=pl.col("_diagnosis"), ms_course=pl.col("_course"))
    return rows, passed, dh_passed, latest.height


def _mapped(table: str, f: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """A CDS file's rows mapped to `table`'s raw rows, and per row the reason it is passed over (null: used)."""
    pid = pl.col("patient_id")
    if table == "visits":
        why = pl.when(pl.col("date_visit").is_null()).then(pl.lit("no date_visit (not a visit)"))
        rows = _contract(f, table, patient_id=pid, visit_date=iso_date(pl.col("date_visit")),
                         edss=pl.col("edss_score"))
    elif table == "relapses":
        code = _code("relapse")
        why = (pl.when(code == "yes").then(pl.lit(None, pl.Utf8))
               .when(code.is_null()).then(pl.lit("relapse empty"))
               .when(code.is_in(["no", "unknown"])).then(pl.format("relapse = {}", code))
               .otherwise(pl.lit("relapse not a code (not yes, no or unknown)")))
        rows = _contract(f, table, patient_id=pid, onset_date=iso_date(pl.col("date_relapse")))
    elif table == "mri":
        why = pl.when((_code("mri") != "yes").fill_null(True) & pl.col("mri_region").is_null()).then(
            pl.lit("mri not yes and no mri_region (no scan)"))
        rows = _contract(f, table, patient_id=pid, scan_date=iso_date(pl.col("mri_date")),
                         gd_lesions=pl.col("mri_gd_les"), new_t2_lesions=pl.col("mri_new_les_t2"))
    elif table == "treatments":
        code, reason = _code("dmt_type"), _code("dmt_stop_reas")
        why = (pl.when(code == NOT_DRUG_EPISODE).then(pl.lit("dmt_type ahsct (a transplant, not a drug episode)"))
               .when(code.is_null() & pl.col("dmt_start").is_null() & pl.col("dmt_stop").is_null())
               .then(pl.lit("no dmt_type and no dates (not a DMT episode)")))
        rows = _contract(
            f, table, patient_id=pid,
            drug=code.replace_strict(DRUGS, default=pl.col("dmt_type"), return_dtype=pl.Utf8),
            start_date=iso_date(pl.col("dmt_start")), end_date=iso_date(pl.col("dmt_stop")),
            stop_reason=pl.when(reason == STOP_UNKNOWN).then(pl.lit(None, pl.Utf8))
            .otherwise(reason.replace_strict(STOP_REASONS, default=pl.col("dmt_stop_reas"), return_dtype=pl.Utf8)))
    elif table == "conditions":
        code, yes = _code("com_type"), _code("comorbidity")
        why = (pl.when(yes != "yes").then(pl.lit("comorbidity not yes"))
               .when(yes.is_null()).then(pl.lit("comorbidity empty"))
               .when(code.is_null()).then(pl.lit("no com_type")))
        rows = _contract(f, table, patient_id=pid,
                         category=code.replace_strict(CATEGORIES, default=pl.lit("other"), return_dtype=pl.Utf8))
    else:
        raise ValueError(table)
    reason = f.select(why.alias("_why")).to_series() if f.height else pl.Series("_why", [], pl.Utf8)
    return rows, reason


def _reasons_named(table: str, quarantine: pl.DataFrame) -> pl.DataFrame:
    """Quarantine reasons that name the CDS file's columns (the contract's name beside them) and dates."""
    reason = pl.col(REASON)
    for contract, cds in SOURCE_COLUMN.get(table, {}).items():
        reason = reason.str.replace_all(rf"(^|; ){contract} ", f"${{1}}{cds} ({contract}) ")
    reason = (reason.str.replace_all(r"is not a date like 2024-03-31 \(%Y-%m-%d\)",
                                     "is not a date (2024-03-31 or 31/03/2024)")
              .str.replace_all("is not in patients.csv", "is not in patient.csv", literal=True)
              .str.replace_all("was quarantined in patients.csv", "was quarantined in patient.csv", literal=True))
    return quarantine.with_columns(reason.alias(REASON))


def cds_dialect(dialect: Dialect) -> Dialect:
    """The dialect the mapped rows are validated in: the folder's decimal mark, ISO dates."""
    return replace(dialect, date_format=CONTRACT_DATES)


def read(folder: Path, dialect: Dialect, vocabulary: DrugVocabulary, *, today: dt.date, max_reject: float = 0.05,
         spill: Path | None = None, per_shard: int = shards.PATIENTS_PER_SHARD, site: str | None = None) -> Registry:
    """Read, map and validate a CDS folder (FatalInputError: exit 1, as the contract's fatal problems)."""
    if not folder.is_dir():
        raise not_an_export_folder(folder)
    files = find_files(folder, names=FILES, what="CDS table")  # the contract's rule for its files
    if "patient" not in files:
        raise FatalInputError("patient.csv", f"is missing from {folder}: it is the one required CDS file")
    site = site or folder.resolve().name or "site"
    ctx = rules.Context(cds_dialect(dialect), today, vocabulary)
    t_read = time.perf_counter()
    read_files = {n: _read(files[n], n, dialect) for n in COLUMNS if n in files}
    read_seconds = time.perf_counter() - t_read
    accounting: dict[str, dict] = {}
    p, p_fields = read_files["patient"]
    dh, dh_fields = read_files.get("disease_history", (None, 0))
    raw: dict[str, tuple[pl.DataFrame, int, str]] = {}
    passed: dict[str, dict[str, int]] = {}
    rows, p_passed, dh_passed, _ = _patients(p, dh, dh_fields, site, today)
    raw["patients"] = (rows, p_fields, files["patient"].name)
    passed["patients"] = p_passed
    accounting[files["patient"].name] = {"rows": p.height, "table": "patients", "passed_over": p_passed}
    if dh is not None:
        accounting[files["disease_history"].name] = {"rows": dh.height, "table": "patients (merged)",
                                                     "passed_over": dh_passed}
    for table, name in TABLE_FILE.items():
        if table == "patients" or name not in read_files:
            continue
        f, n_fields = read_files.pop(name)
        rows, why = _mapped(table, f)
        keep = why.is_null()
        raw[table] = (rows.filter(keep), n_fields, files[name].name)
        passed[table] = _counts(why)
        accounting[files[name].name] = {"rows": f.height, "table": table, "passed_over": passed[table]}
        del f, rows, why
    del read_files, p, dh  # only the mapped rows are kept while they are validated

    def open_table(table: str) -> tuple[_Source, Path, str] | None:
        if table not in raw:
            return None
        rows, n_fields, file = raw[table]
        return _Source(rows.lazy(), n_fields, None), folder / file, file

    registry = validate(open_table, ctx, max_reject=max_reject, spill=spill, per_shard=per_shard,
                        restate=_reasons_named)
    registry.read_seconds += read_seconds
    for table, inp in registry.inputs.items():
        inp.passed_over = passed.get(table, {})
    for n in NOT_READ:
        if n in files:
            rows = _count_rows(files[n])
            accounting[files[n].name] = {"rows": rows, "table": None,
                                         "passed_over": {"file not read (no contract table)": rows}}
    registry.source = {"format": "msda", "site": site, "files": accounting,
                       "absent": [f"{n}.csv" for n in FILES if n not in files],
                       "not_in_cds": [t for t in TABLES if t not in raw]}
    return registry
