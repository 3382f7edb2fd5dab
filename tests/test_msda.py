"""The MSDA Core Dataset reader (pipeline/inputs/msda.py; spec: docs/msda.md): detection, every coded
value's mapping, date forms, BOM, header case, absent files, passed-over accounting, and a fixture in
the layout of the MSDA ETL's dummy data (our own rows, its quirks) read with a reason per row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipeline.core.dialect import Dialect
from pipeline.core.errors import FatalInputError, UsageError
from pipeline.core.vocabulary import load_vocabulary
from pipeline.inputs import msda, sources
from tests.conftest import ROOT, TODAY

DUMMY = ROOT / "tests" / "fixtures" / "msda_dummy"
PATIENT = "patient_id;date_visit;date_birth;sex\n"
HISTORY = "patient_id;date_visit;date_diagnosis;date_onset;csf_olib;ms_course\n"


def cds(folder: Path, files: dict[str, str], bom: tuple[str, ...] = ()) -> Path:
    """A CDS folder: file name (without .csv) -> text."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"patient": PATIENT + "1;;1970-01-01;female\n2;;1980-05-05;male\n", **files}
    for name, text in files.items():
        (folder / f"{name}.csv").write_bytes((b"\xef\xbb\xbf" if name in bom else b"") + text.encode())
    return folder


def read(folder: Path, **kw):
    kw = {"today": TODAY, "max_reject": 1.0, "site": "S", **kw}
    return msda.read(folder, Dialect(), load_vocabulary(), **kw)


def reasons(reg, table: str) -> list[str]:
    return reg.quarantine[table][msda.REASON].to_list()


# ---- detection ------------------------------------------------------------------------

def test_detect(tmp_path):
    assert sources.detect(ROOT / "data_samples" / "msda") == "msda"
    assert sources.detect(ROOT / "data_samples" / "default") == "csv"
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "Patient.CSV").write_text(PATIENT)
    (odd / "DISEASE_HISTORY.csv").write_text(HISTORY)
    assert sources.detect(odd) == "msda"
    (odd / "patients.csv").write_text("patient_id,site_id\n")
    assert sources.detect(odd) == "csv"  # a contract export that happens to hold CDS files too
    assert sources.detect(odd, "msda") == "msda"
    only_patient = tmp_path / "only"
    only_patient.mkdir()
    (only_patient / "patient.csv").write_text(PATIENT)
    assert sources.detect(only_patient) == "csv"  # disease_history.csv is part of what says CDS
    assert sources.detect(only_patient, "msda") == "msda"
    with pytest.raises(UsageError):
        sources.detect(odd, "omop-typo")


# ---- coded values -----------------------------------------------------------------------

DRUGS = {**{c: c for c in ("alemtuzumab", "azathioprine", "cladribine", "cyclophosphamide", "dimethyl_fumarate",
                           "diroximel_fumarate", "fingolimod", "glatiramer_acetate", "mitoxantrone", "natalizumab",
                           "ocrelizumab", "ofatumumab", "ozanimod", "ponesimod", "rituximab", "siponimod",
                           "teriflunomide", "ublituximab")},
         "interferon": "interferon_beta_1a", "peg_interferon": "peginterferon_beta_1a",
         **{c: "other" for c in ("corticosteroids", "immunoglobulin", "methotrexate", "minocycline",
                                 "mycophenolate_mofetil", "fludarabine", "monomethyl_fumarate")}}


def test_every_drug_code(tmp_path):
    codes = list(DRUGS) + ["ahsct", " Natalizumab ", "WONDER_DRUG", ""]
    rows = "".join(f"1;;;{c};2010-01-{1 + i % 28:02d};;\n" for i, c in enumerate(codes))
    reg = read(cds(tmp_path, {"dmt": "patient_id;date_visit;dmt_status;dmt_type;dmt_start;dmt_stop;dmt_stop_reas\n"
                              + rows}))
    got = reg.tables["treatments"]["drug"].to_list()
    assert got == list(DRUGS.values()) + ["natalizumab"]  # trimmed, compared in lower case
    assert reg.inputs["treatments"].passed_over == {"dmt_type ahsct (a transplant, not a drug episode)": 1}
    bad = reasons(reg, "treatments")
    assert len(bad) == 2
    assert "dmt_type (drug) 'WONDER_DRUG' is not in the drug vocabulary" in bad[0]
    assert bad[1] == "dmt_type (drug) is empty but required"
    lines = reg.tables["treatments"]["line"].to_list()
    assert lines[list(DRUGS).index("natalizumab")] == 2 and lines[list(DRUGS).index("interferon")] == 1


STOPS = {"stop_inefficacy": "inefficacy", "stop_disease_activity": "inefficacy", "stop_progression": "inefficacy",
         "stop_intolerance": "adverse_event", "stop_contraindication": "adverse_event",
         "stop_patient_choice": "patient_choice", "stop_non_adherence": "other", "stop_financial": "other",
         "stop_other": "other", "stop_unknown": None, "": None, "STOP_Inefficacy": "inefficacy",
         "moved away": "other"}  # a value outside the codes: read as `other`, as the contract reads one


def test_every_stop_reason(tmp_path):
    rows = "".join(f"1;;;natalizumab;2010-01-{1 + i:02d};2011-01-{1 + i:02d};{c}\n" for i, c in enumerate(STOPS))
    rows += "1;;;natalizumab;2012-01-01;;stop_inefficacy\n"  # ongoing: the reason is not read
    reg = read(cds(tmp_path, {"dmt": "patient_id;date_visit;dmt_status;dmt_type;dmt_start;dmt_stop;dmt_stop_reas\n"
                              + rows}))
    assert reg.tables["treatments"]["stop_reason"].to_list() == list(STOPS.values()) + [None]


COURSES = {"rrms": "RRMS", "spms": "SPMS", "ppms": "PPMS", "cis": "CIS", "ris": "RIS", " RRMS ": "RRMS",
           "unknown": "UNK", "new_code": "UNK", "": "UNK"}


def test_every_course_and_sex(tmp_path):
    ids = [f"P{i}" for i in range(len(COURSES))]
    sexes = ["female", "male", "Female", "MALE", "x", "", "unknown", "f", "m"]
    patient = PATIENT + "".join(f"{p};;1970-01-01;{s}\n" for p, s in zip(ids, sexes))
    history = HISTORY + "".join(f"{p};;;;;{c}\n" for p, c in zip(ids, COURSES))
    reg = read(cds(tmp_path, {"patient": patient, "disease_history": history}))
    pts = reg.tables["patients"]
    assert pts["ms_course"].to_list() == list(COURSES.values())
    assert pts["sex"].to_list() == ["F", "M", "F", "M", "U", "U", "U", "U", "U"]
    assert set(pts["site_id"]) == {"S"} and pts["research_consent"].null_count() == pts.height
    assert pts["death_date"].null_count() == pts.height


CATEGORIES = {"com_cancer": "malignancy", "com_depression": "psychiatric", "com_anxiety": "psychiatric",
              "com_bipolar": "psychiatric", "com_psychosis": "psychiatric", "com_alc_abuse": "psychiatric",
              "com_drug_abuse": "psychiatric", "com_arrhythmia": "cardiac", "com_congestive_heart": "cardiac",
              "com_ischemic_heart": "cardiac", "com_chronic_lung": "pulmonary", "com_hepatitis": "hepatic",
              "com_diabetes": "other", "com_stroke": "other", "com_autoimmune": "other", "com_new": "other",
              " COM_CANCER ": "malignancy"}


def test_every_comorbidity_category(tmp_path):
    # One patient per code: two comorbidities of one category of one patient are the same contract row
    # (no code, no dates), dropped as a duplicate as the contract drops one.
    patient = PATIENT + "".join(f"P{i};;1970-01-01;female\n" for i in range(len(CATEGORIES)))
    rows = "".join(f"P{i};;yes;{c};\n" for i, c in enumerate(CATEGORIES))
    rows += "P0;;no;com_cancer;\nP0;;yes;;\nP0;;;com_cancer;\nP0;;unknown;com_cancer;\nP1;;yes;com_anxiety;\n"
    reg = read(cds(tmp_path, {"patient": patient,
                              "comorbidities": "patient_id;date_visit;comorbidity;com_type;com_system\n" + rows}))
    cond = reg.tables["conditions"]
    assert cond["category"].to_list() == list(CATEGORIES.values())
    assert reg.inputs["conditions"].duplicates_dropped == 1
    assert cond["code"].null_count() == cond["onset_date"].null_count() == cond["end_date"].null_count() == cond.height
    assert reg.inputs["conditions"].passed_over == {"comorbidity not yes": 2, "no com_type": 1, "comorbidity empty": 1}


def test_relapse_and_mri_rows_passed_over(tmp_path):
    relapses = ("patient_id;date_visit;relapse;date_relapse;relapse_treat;relapse_recovery\n"
                "1;;yes;2020-01-01;;\n1;;no;2020-02-01;;\n1;;unknown;;;\n1;;;;;\n1;;Yes;2020-03-01;;\n1;;maybe;;;\n")
    mri = ("patient_id;date_visit;mri;mri_region;mri_date;mri_gd_les;mri_new_les_T1;mri_new_les_T2\n"
           "1;;yes;;2020-01-01;1;;2\n1;;no;mri_brain;2020-02-01;0;;0\n1;;;mri_myelon;2020-03-01;;;\n1;;no;;;;;\n"
           "1;;;;2020-04-01;1;;1\n")
    status = ("patient_id;date_visit;ms_status_clin;ms_status_pat;edss_score\n1;2020-01-01;;;3.5\n1;;;;4.0\n"
              "1;2020-02-01;;;\n")
    reg = read(cds(tmp_path, {"relapses": relapses, "mri": mri, "disease_status": status}))
    assert reg.tables["relapses"]["onset_date"].cast(pl.Utf8).to_list() == ["2020-01-01", "2020-03-01"]
    assert reg.inputs["relapses"].passed_over == {"relapse = no": 1, "relapse = unknown": 1, "relapse empty": 1,
                                                  "relapse not a code (not yes, no or unknown)": 1}
    scans = reg.tables["mri"]
    assert scans["scan_date"].cast(pl.Utf8).to_list() == ["2020-01-01", "2020-02-01", "2020-03-01"]
    assert scans["gd_lesions"].to_list() == [1, 0, None] and scans["new_t2_lesions"].to_list() == [2, 0, None]
    assert reg.inputs["mri"].passed_over == {"mri not yes and no mri_region (no scan)": 2}
    assert reg.tables["visits"]["edss"].to_list() == [3.5, None]
    assert reg.inputs["visits"].passed_over == {"no date_visit (not a visit)": 1}


# ---- dates, BOM, header case ------------------------------------------------------------

def test_date_forms_mixed_in_one_file(tmp_path):
    relapses = ("patient_id;date_visit;relapse;date_relapse\n"
                "1;;yes;2021-03-04\n1;;yes;05/03/2021\n1;;yes;6/3/2021\n1;;yes;14/11/2019\n"
                "1;;yes;04/03/21\n1;;yes;04-03-2021\n1;;yes;31/02/2021\n1;;yes;2021/03/04\n1;;yes;\n")
    reg = read(cds(tmp_path, {"relapses": relapses}))
    assert reg.tables["relapses"]["onset_date"].cast(pl.Utf8).to_list() == [
        "2021-03-04", "2021-03-05", "2021-03-06", "2019-11-14"]
    q = reg.quarantine["relapses"]
    assert q["_line"].to_list() == [6, 7, 8, 9, 10]
    assert q[msda.REASON].to_list() == [
        "date_relapse (onset_date) '04/03/21' is not a date (2024-03-31 or 31/03/2024)",
        "date_relapse (onset_date) '04-03-2021' is not a date (2024-03-31 or 31/03/2024)",
        "date_relapse (onset_date) '31/02/2021' is not a date (2024-03-31 or 31/03/2024)",
        "date_relapse (onset_date) '2021/03/04' is not a date (2024-03-31 or 31/03/2024)",
        "date_relapse (onset_date) is empty but required"]


def test_dates_in_every_mapped_column(tmp_path):
    patient = PATIENT + "1;;4/3/1970;female\n"
    history = HISTORY + "1;;1/2/2000;28/12/1999;;rrms\n"
    dmt = "patient_id;dmt_type;dmt_start;dmt_stop;dmt_stop_reas\n1;natalizumab;5/6/2001;2002-07-08;stop_other\n"
    mri = "patient_id;mri;mri_region;mri_date;mri_gd_les;mri_new_les_t2\n1;yes;mri_brain;09/10/2003;0;0\n"
    status = "patient_id;date_visit;edss_score\n1;11/12/2004;2.0\n"
    reg = read(cds(tmp_path, {"patient": patient, "disease_history": history, "dmt": dmt, "mri": mri,
                              "disease_status": status}))
    p = reg.tables["patients"].row(0, named=True)
    assert [str(p[c]) for c in ("birth_date", "diagnosis_date", "onset_date")] == ["1970-03-04", "2000-02-01",
                                                                                  "1999-12-28"]
    t = reg.tables["treatments"].row(0, named=True)
    assert (str(t["start_date"]), str(t["end_date"])) == ("2001-06-05", "2002-07-08")
    assert str(reg.tables["mri"]["scan_date"][0]) == "2003-10-09"
    assert str(reg.tables["visits"]["visit_date"][0]) == "2004-12-11"


@pytest.mark.parametrize("bom", [(), ("patient",), ("patient", "relapses", "mri"), ("relapses",)])
def test_bom_per_file(tmp_path, bom):
    relapses = "patient_id;date_visit;relapse;date_relapse\n1;;yes;2020-01-01\n"
    mri = "patient_id;mri;mri_region;mri_date;mri_gd_les;mri_new_les_T2\n2;yes;mri_brain;2020-01-01;1;2\n"
    reg = read(cds(tmp_path, {"relapses": relapses, "mri": mri}, bom=bom))
    assert reg.tables["patients"]["patient_id"].to_list() == ["1", "2"]
    assert reg.tables["relapses"].height == 1 and reg.tables["mri"]["new_t2_lesions"].to_list() == [2]
    assert all(q.height == 0 for q in reg.quarantine.values())


@pytest.mark.parametrize("header", ["mri_new_les_T2", "mri_new_les_t2", "MRI_NEW_LES_T2", " Mri_New_Les_T2 "])
def test_header_case_as_found(tmp_path, header):
    mri = f"Patient_ID;MRI;mri_region;Mri_Date;mri_gd_les;mri_new_les_T1;{header}\n1;yes;mri_brain;2020-01-01;1;5;3\n"
    reg = read(cds(tmp_path, {"mri": mri}))
    assert reg.tables["mri"]["new_t2_lesions"].to_list() == [3]


# ---- files present, absent, not read; the patient's latest rows ------------------------------------

def test_absent_files_named_and_tables_absent(tmp_path):
    reg = read(cds(tmp_path, {"relapses": "patient_id;date_visit;relapse;date_relapse\n1;;yes;2020-01-01\n"}))
    assert reg.source["absent"] == ["disease_history.csv", "disease_status.csv", "mri.csv", "dmt.csv",
                                    "comorbidities.csv", "npt.csv", "symptom.csv"]
    assert reg.absent == ["visits", "treatments", "labs", "function_tests", "conditions", "mri"]
    assert reg.tables["patients"]["diagnosis_date"].null_count() == 2


def test_no_patient_file_is_fatal(tmp_path):
    (tmp_path / "disease_history.csv").write_text(HISTORY)
    with pytest.raises(FatalInputError, match="patient.csv: is missing"):
        msda.read(tmp_path, Dialect(), load_vocabulary(), today=TODAY)


def test_missing_required_column_is_fatal(tmp_path):
    with pytest.raises(FatalInputError, match="relapses.csv.*required column 'date_relapse'"):
        read(cds(tmp_path, {"relapses": "patient_id;date_visit;relapse\n1;;yes\n"}))


def test_npt_and_symptom_counted_not_read(tmp_path):
    reg = read(cds(tmp_path, {"npt": "patient_id;date_visit;np_treat_type\n1;;x\n\n2;;y\n",
                              "symptom": "patient_id;broken\n1\n"}))
    assert reg.source["files"]["npt.csv"]["passed_over"] == {"file not read (no contract table)": 2}
    assert reg.source["files"]["symptom.csv"]["passed_over"] == {"file not read (no contract table)": 1}


def test_latest_patient_and_disease_history_rows(tmp_path):
    patient = PATIENT + ("1;2010-01-01;1960-01-01;male\n1;05/06/2015;1961-01-01;female\n1;;1962-01-01;male\n"
                         "2;2015-01-01;1970-01-01;male\n2;2015-01-01;1971-01-01;female\n")
    history = HISTORY + ("1;2012-01-01;2001-01-01;2000-01-01;;rrms\n1;2014-01-01;2003-03-03;;;spms\n"
                         "1;;1999-01-01;1998-01-01;;ppms\n1;2099-01-01;2020-01-01;2019-01-01;;cis\n"
                         "2;2014-01-01;;;;\n;2014-01-01;2001-01-01;;;rrms\n7;2014-01-01;2001-01-01;;;rrms\n")
    reg = read(cds(tmp_path, {"patient": patient, "disease_history": history}))
    p = reg.tables["patients"].select("patient_id", "sex", pl.col("birth_date").cast(pl.Utf8),
                                      pl.col("diagnosis_date").cast(pl.Utf8), pl.col("onset_date").cast(pl.Utf8),
                                      "ms_course").rows()
    # 1: the 2015 row (an empty date_visit is the oldest); the 2014 diagnosis, the 2012 onset (the 2014 row has
    # none), SPMS; the 2099 row is after today. 2: a tie, the later line; nothing recorded.
    assert p == [("1", "F", "1961-01-01", "2003-03-03", "2000-01-01", "SPMS"),
                 ("2", "F", "1971-01-01", None, None, "UNK")]
    assert reg.inputs["patients"].passed_over == {
        "an earlier patient row of the same patient (the latest by date_visit is read)": 3}
    assert reg.source["files"]["disease_history.csv"]["passed_over"] == {
        "date_visit after today": 1, "empty patient_id": 1, "patient_id not in patient.csv": 1}
    assert reg.quarantine["patients"].height == 0


def test_orphans_and_duplicates_as_the_contract(tmp_path):
    relapses = ("patient_id;date_visit;relapse;date_relapse\n1;;yes;2020-01-01\n1;;yes;2020-01-01\n"
                "9;;yes;2020-01-01\n;;yes;2020-01-01\n")
    reg = read(cds(tmp_path, {"relapses": relapses}))
    inp = reg.inputs["relapses"]
    assert (inp.rows_read, inp.rows_accepted, inp.duplicates_dropped, inp.rows_quarantined) == (4, 1, 1, 2)
    assert reasons(reg, "relapses") == ["patient_id '9' is not in patient.csv", "patient_id is empty but required"]


# ---- the MSDA ETL's dummy layout (our own rows, its quirks) -------------------------------------

def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "MSFEAS_TODAY": TODAY.isoformat(), **(env or {})}, timeout=300)


def test_dummy_layout_every_row_has_a_place():
    reg = read(DUMMY)
    src = reg.source
    assert src["absent"] == [] and src["not_in_cds"] == ["labs", "function_tests"]
    for name, acc in src["files"].items():
        if acc["table"] in (None, "patients (merged)"):
            continue
        inp = reg.inputs[acc["table"]]
        # Every row of the file: accepted, quarantined (with a reason), a duplicate, or passed over by reason.
        assert acc["rows"] == inp.rows_read + sum(inp.passed_over.values()), name
        assert inp.rows_read == inp.rows_accepted + inp.rows_quarantined + inp.duplicates_dropped, name
        q = reg.quarantine[acc["table"]]
        assert q[msda.REASON].null_count() == 0 and (q[msda.REASON].str.len_chars() > 0).all(), name
    # The 1800s: every patient's dates are out of range (or not a date), so every patient is quarantined.
    assert reg.tables["patients"].height == 0
    q = reg.quarantine["patients"]
    assert q["_line"].to_list() == [2, 3, 4, 5, 6, 7, 8, 10]
    assert "date_birth (birth_date) '1842-11-09' is outside 1900-01-01 .. today" in q[msda.REASON][0]
    assert "date_birth (birth_date) '23-07-1884' is not a date" in q[msda.REASON][6]
    assert q[msda.REASON][7].startswith("patient_id is empty but required; ")
    mri = reg.quarantine["mri"]
    assert mri["new_t2_lesions"].to_list()[:2] == ["2", "0"]  # read from mri_new_les_T2, header case as found
    assert "patient_id '11' was quarantined in patient.csv" in mri[msda.REASON][0]


def test_dummy_layout_cli_exit_1_then_0(tmp_path):
    r = cli("run", "--input", str(DUMMY), "--out", str(tmp_path / "a"), "--site", "demo", "--trial", "all",
            "--no-cache")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "patient.csv" in r.stderr and "(--max-reject)" in r.stderr
    r = cli("run", "--input", str(DUMMY), "--out", str(tmp_path / "b"), "--site", "demo", "--trial", "all",
            "--no-cache", "--max-reject", "100", "--engine", "duckdb")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    q = pl.read_csv(tmp_path / "b" / "nct04203017" / "quarantine" / "patients.csv", infer_schema=False)
    assert q.height == 8 and q["_reason"].null_count() == 0


def test_cli_sample_polars_and_forced_formats(tmp_path):
    r = cli("run", "--input", "data_samples/msda", "--out", str(tmp_path / "s"), "--site", "demo", "--trial", "all",
            "--no-cache")
    assert r.returncode == 0, r.stderr
    assert "absent tables (criteria reading them are unknown): labs, function_tests" in r.stdout
    sites = pl.read_csv(tmp_path / "s" / "nct04203017" / "site_counts.csv", infer_schema=False)
    assert "demo" in sites.row(0) or "demo" in sites.columns or "demo" in sites.to_series(0).to_list()
    r = cli("run", "--input", "data_samples/default", "--out", str(tmp_path / "f"), "--input-format", "msda",
            "--no-cache")
    assert r.returncode == 1 and "patient.csv: is missing" in r.stderr and "Traceback" not in r.stderr
    r = cli("run", "--input", "data_samples/msda", "--out", str(tmp_path / "g"), "--engine", "spark", "--no-cache")
    assert r.returncode == 2 and "--engine spark reads the CSV contract's export folder only" in r.stderr


def test_cache_key_differs_by_site(tmp_path):
    """A cached CDS export read for one site is not served for another."""
    cache = tmp_path / "cache"
    for i, site in enumerate(["one", "two"]):
        r = cli("run", "--input", "data_samples/msda", "--out", str(tmp_path / f"c{i}"), "--site", site,
                "--cache", str(cache))
        assert r.returncode == 0, r.stderr
    import json
    for i, site in enumerate(["one", "two"]):
        s = json.loads((tmp_path / f"c{i}" / "summary.json").read_text())
        assert site in json.dumps(s.get("by_site") or s.get("sites") or s), site


def test_cli_nightly_and_history(tmp_path):
    """Every command reads a CDS folder: the nightly, and a run with --history."""
    r = cli("nightly", "--input", "data_samples/msda", "--runs-dir", str(tmp_path / "runs"), "--site", "demo",
            "--trial", "all")
    assert r.returncode == 0, r.stderr
    r = cli("run", "--input", "data_samples/msda", "--out", str(tmp_path / "h"), "--site", "demo", "--trial",
            "nct04047628", "--history", "3", "--no-cache", "--engine", "duckdb")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "h" / "history.csv").is_file()


def test_comma_separated_and_export_toml(tmp_path):
    """A CDS written with commas is read as such (its header has no semicolon); export.toml's delimiter is
    kept, and its decimal mark applies to the EDSS."""
    commas = cds(tmp_path / "c", {"patient": "patient_id,date_visit,date_birth,sex\n1,,1970-01-01,female\n",
                                  "relapses": "patient_id,date_visit,relapse,date_relapse\n1,,yes,2020-01-01\n"})
    reg = read(commas)
    assert reg.tables["patients"]["sex"].to_list() == ["F"] and reg.tables["relapses"].height == 1
    tabs = cds(tmp_path / "t", {"patient": "patient_id|date_visit|date_birth|sex\n".replace("|", "\t")
                                + "1\t\t1970-01-01\tmale\n",
                                "disease_status": "patient_id\tdate_visit\tedss_score\n1\t2020-01-01\t3,5\n"})
    reg = msda.read(tabs, Dialect(delimiter="\t", decimal=","), load_vocabulary(), today=TODAY, site="S")
    assert reg.tables["visits"]["edss"].to_list() == [3.5]


def test_rows_with_the_wrong_number_of_fields(tmp_path):
    """A ragged row sends the file to the careful reader; the contract's field-count rule quarantines it."""
    relapses = ("patient_id;date_visit;relapse;date_relapse\n1;;yes;2020-01-01\n1;;yes;2020-02-01;extra\n"
                "2;;yes\n2;;yes;2020-03-01\n")
    reg = read(cds(tmp_path, {"relapses": relapses}))
    assert reg.tables["relapses"]["onset_date"].cast(pl.Utf8).to_list() == ["2020-01-01", "2020-03-01"]
    q = reg.quarantine["relapses"]
    assert q["_line"].to_list() == [3, 4]
    assert all("field" in r for r in q[msda.REASON].to_list()), q[msda.REASON].to_list()
