"""Row rules at their edges, quarantine reasons, accounting, dialect parity, fatal errors."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from pipeline.cli import main
from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.inputs.ingest import ingest
from pipeline.inputs.readcsv import decode, read_csv_text
from tests.conftest import ROOT, TODAY, write_export

SAMPLES = ROOT / "data_samples"


def run_ingest(folder, **kw):
    return ingest(folder, kw.pop("dialect", Dialect()), load_vocabulary(), today=TODAY, max_reject=1.0, **kw)


def P(pid="A1", **kw):
    return {"patient_id": pid, "site_id": "S1", "sex": "F", "birth_date": "1980-01-01"} | kw


@pytest.mark.parametrize("table,row,ok,reason", [
    ("patients", P(birth_date="1900-01-01"), True, None),
    ("patients", P(birth_date="1899-12-31"), False, "birth_date '1899-12-31' is outside 1900-01-01 .. today"),
    ("patients", P(birth_date=TODAY.isoformat()), True, None),
    ("patients", P(birth_date=(TODAY + dt.timedelta(days=1)).isoformat()), False, "is outside 1900-01-01 .. today"),
    ("patients", P(pid="a" * 64), True, None),
    ("patients", P(pid="a" * 65), False, "is not 1-64 characters"),
    ("patients", P(pid="bad id"), False, "patient_id 'bad id' is not 1-64 characters"),
    ("patients", P(site_id=None), False, "site_id is empty but required"),
    ("patients", P(sex="x"), False, "sex 'x' is not one of F, M, U"),
    ("patients", P(ms_course="ppms"), True, None),
    ("visits", {"patient_id": "A1", "visit_date": "2024-01-01", "edss": "10.0"}, True, None),
    ("visits", {"patient_id": "A1", "visit_date": "2024-01-01", "edss": "10.5"}, False, "edss '10.5' is not an EDSS score"),
    ("visits", {"patient_id": "A1", "visit_date": "2024-01-01", "edss": "3.25"}, False, "edss '3.25'"),
    ("visits", {"patient_id": "A1", "visit_date": "2024-01-01", "edss": "nan"}, False, "edss 'nan' is not a number"),
    ("visits", {"patient_id": "A1", "visit_date": "2024-01-01", "karnofsky": "70.0"}, True, None),
    ("visits", {"patient_id": "A1", "visit_date": "2024-01-01", "karnofsky": "75"}, False, "karnofsky '75'"),
    ("visits", {"patient_id": "A1", "visit_date": "2024-01-01", "weight_kg": "20"}, True, None),
    ("visits", {"patient_id": "A1", "visit_date": "2024-01-01", "weight_kg": "19.9"}, False, "weight_kg '19.9' is outside 20 .. 350 kg"),
    ("visits", {"patient_id": "A1", "visit_date": None}, False, "visit_date is empty but required"),
    ("visits", {"patient_id": "A1", "visit_date": "2024-02-30"}, False, "visit_date '2024-02-30' is not a date"),
    ("visits", {"patient_id": "ZZ", "visit_date": "2024-01-01"}, False, "patient_id 'ZZ' is not in patients.csv"),
    ("treatments", {"patient_id": "A1", "drug": "Interferon beta-1a", "start_date": "2020-01-01"}, True, None),
    ("treatments", {"patient_id": "A1", "drug": "TYSABRI", "start_date": "2020-01-01", "end_date": "2020-01-01"}, True, None),
    ("treatments", {"patient_id": "A1", "drug": "Tysabri", "start_date": "2020-01-02", "end_date": "2020-01-01"}, False, "end_date '2020-01-01' is before start_date"),
    ("treatments", {"patient_id": "A1", "drug": "Zinbryta", "start_date": "2020-01-01"}, False, "drug 'Zinbryta' is not in the drug vocabulary"),
    ("labs", {"patient_id": "A1", "sample_date": "2024-01-01", "test": "CREAT", "value": "0", "unit": "umol/L"}, False, "must be above 0 for CREAT"),
    ("labs", {"patient_id": "A1", "sample_date": "2024-01-01", "test": "AST", "value": "0", "unit": "IU/L"}, True, None),
    ("labs", {"patient_id": "A1", "sample_date": "2024-01-01", "test": "TBIL", "value": "5", "unit": "µmol/L"}, True, None),
    ("labs", {"patient_id": "A1", "sample_date": "2024-01-01", "test": "AST", "value": "5", "unit": "mg/dL"}, False, "unit 'mg/dL' is not a unit of this test"),
    ("labs", {"patient_id": "A1", "sample_date": "2024-01-01", "test": "HGB", "value": "140", "unit": "g/L"}, True, None),
    ("labs", {"patient_id": "A1", "sample_date": "2024-01-01", "test": "AST", "value": "5", "unit": "U/L", "ref_high": "0"}, False, "ref_high '0' is not above 0"),
    ("function_tests", {"patient_id": "A1", "test_date": "2024-01-01", "test": "LVEF", "value": "100"}, True, None),
    ("function_tests", {"patient_id": "A1", "test_date": "2024-01-01", "test": "LVEF", "value": "100.1"}, False, "is outside the test's range"),
    ("function_tests", {"patient_id": "A1", "test_date": "2024-01-01", "test": "FEV1", "value": "250"}, True, None),
    ("conditions", {"patient_id": "A1", "category": "Infection", "infection_type": "VIRAL", "controlled": "y"}, True, None),
    ("conditions", {"patient_id": "A1", "category": "tumour"}, False, "category 'tumour' is not one of"),
    ("conditions", {"patient_id": "A1", "category": "other", "onset_date": "2020-01-02", "end_date": "2020-01-01"}, False, "end_date '2020-01-01' is before onset_date"),
    ("treatments", {"patient_id": "A1", "drug": "Tysabri", "start_date": "2020-01-01", "end_date": "2021-01-01", "stop_reason": "lack of efficacy"}, True, None),
    ("treatments", {"patient_id": "A1", "drug": "Tysabri", "start_date": "2020-01-01", "stop_reason": "Inefficacy"}, True, None),
    ("mri", {"patient_id": "A1", "scan_date": "2024-01-01"}, True, None),
    ("mri", {"patient_id": "A1", "scan_date": "2024-01-01", "gd_lesions": "0", "new_t2_lesions": "999"}, True, None),
    ("mri", {"patient_id": "A1", "scan_date": "2024-01-01", "gd_lesions": "2.0"}, True, None),
    ("mri", {"patient_id": "A1", "scan_date": "2024-01-01", "gd_lesions": "1000"}, False, "gd_lesions '1000' is not a lesion count (a whole number 0 .. 999)"),
    ("mri", {"patient_id": "A1", "scan_date": "2024-01-01", "new_t2_lesions": "-1"}, False, "new_t2_lesions '-1' is not a lesion count"),
    ("mri", {"patient_id": "A1", "scan_date": "2024-01-01", "gd_lesions": "1.5"}, False, "gd_lesions '1.5' is not a whole number"),
    ("mri", {"patient_id": "A1", "scan_date": "2024-01-01", "new_t2_lesions": "few"}, False, "new_t2_lesions 'few' is not a whole number"),
    ("mri", {"patient_id": "A1", "scan_date": "2024-01-01", "gd_lesions": "nan"}, False, "gd_lesions 'nan' is not a whole number"),
    ("mri", {"patient_id": "A1", "scan_date": None, "gd_lesions": "1"}, False, "scan_date is empty but required"),
    ("mri", {"patient_id": "A1", "scan_date": "2024-02-30"}, False, "scan_date '2024-02-30' is not a date"),
    ("mri", {"patient_id": "ZZ", "scan_date": "2024-01-01"}, False, "patient_id 'ZZ' is not in patients.csv"),
])
def test_row_rule(tmp_path, table, row, ok, reason):
    tables = {"patients": [P()] if table != "patients" else [row]}
    if table != "patients":
        tables[table] = [row]
    reg = run_ingest(write_export(tmp_path / "e", tables))
    q = reg.quarantine[table]
    assert (q.height == 0) is ok, q.to_dicts()
    if not ok:
        assert reason in q["_reason"][0]
        assert q["_line"][0] == 2


def test_several_rules_all_said(tmp_path):
    folder = write_export(tmp_path / "e", {"patients": [P()], "visits": [
        {"patient_id": "A1", "visit_date": "2024-01-01", "edss": "11", "karnofsky": "75"}]})
    reason = run_ingest(folder).quarantine["visits"]["_reason"][0]
    assert "edss '11'" in reason and "karnofsky '75'" in reason


def test_duplicates_conflicts_and_lines(tmp_path):
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "PATIENTS.CSV").write_text(
        "\ufeff Patient_ID , site_id,sex\n\nA1,S1,F\nA1 , S1 ,F\nB2,S1,F\nB2,S2,F\n\"C3\",\"S\n1\",M\nD4,S1,F,extra\n")
    (folder / "visits.csv").write_text("patient_id,visit_date\nB2,2024-01-01\nC3,2024-01-01\n")
    reg = run_ingest(folder)
    inp = reg.inputs["patients"]
    assert (inp.rows_read, inp.duplicates_dropped, inp.rows_quarantined, inp.rows_accepted) == (6, 1, 3, 2)
    q = reg.quarantine["patients"]
    assert q["_line"].to_list() == [5, 6, 9]
    assert "is on 2 rows with different content (lines 5, 6)" in q["_reason"][0]
    assert "row has 4 fields where the header has 3" in q["_reason"][2]
    assert reg.tables["patients"]["site_id"].to_list() == ["S1", "S\n1"]
    assert "was quarantined in patients.csv" in reg.quarantine["visits"]["_reason"][0]


@pytest.mark.parametrize("first", ["A1", "A1,S1,F,x,y"])
def test_a_first_row_with_the_wrong_field_count_is_quarantined_not_fatal(tmp_path, first):
    """Polars takes the column count from the first line it reads: a short or long first row once
    made the whole file 'not valid CSV'; it is one quarantined row like any other."""
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "patients.csv").write_text(f'patient_id,site_id,sex\n{first}\n"B2",S1,F\n')
    reg = run_ingest(folder)
    assert (reg.inputs["patients"].rows_read, reg.inputs["patients"].rows_quarantined) == (2, 1)
    assert "fields where the header has 3" in reg.quarantine["patients"]["_reason"][0]


def test_broken_quoting_is_reported_by_line_without_the_content(tmp_path):
    from pipeline.core.errors import FatalInputError
    text = 'patient_id,site_id\nA1,S1\nB2,"S1\nC3,SECRET"X\n'
    with pytest.raises(FatalInputError) as exc:
        read_csv_text(text, ",", "patients.csv")
    assert exc.value.line == 3 and "SECRET" not in str(exc.value) and "double quote" in str(exc.value)


def test_samples_account_for_every_row():
    from pipeline.core.dialect import load_dialect
    for name in ("default", "regional"):
        folder = SAMPLES / name
        reg = run_ingest(folder, dialect=load_dialect(folder, {}))
        for table, i in reg.inputs.items():
            assert i.present
            assert i.rows_read == i.rows_accepted + i.rows_quarantined + i.duplicates_dropped, table
        assert sum(i.rows_quarantined for i in reg.inputs.values()) >= 10


def test_dialect_parity():
    from pipeline.core.dialect import load_dialect
    a = run_ingest(SAMPLES / "default", dialect=load_dialect(SAMPLES / "default", {}))
    b = run_ingest(SAMPLES / "regional", dialect=load_dialect(SAMPLES / "regional", {}))
    for table in a.tables:
        assert a.tables[table].equals(b.tables[table]), table
        assert a.quarantine[table]["_line"].equals(b.quarantine[table]["_line"])


# ---- the command line: fatal input (exit 1, nothing written) and usage (exit 2) --------------

def cli(*args):
    return main([str(a) for a in args])


def fatal_case(tmp_path, kind):
    folder = write_export(tmp_path / "in", {"patients": [P()], "visits": [{"patient_id": "A1", "visit_date": "2024-01-01"}]})
    if kind == "no_patients":
        (folder / "patients.csv").unlink()
    elif kind == "missing_column":
        (folder / "visits.csv").write_text("patient_id,edss\nA1,3\n")
    elif kind == "undecodable":
        (folder / "visits.csv").write_bytes(b"patient_id,visit_date\nA1,2024-01-01\n\xff\xfe,2024-01-01\n")
    elif kind == "too_many_rejects":
        (folder / "visits.csv").write_text("patient_id,visit_date\nA1,2024-01-01\nA1,bad\n")
    elif kind == "no_header":
        (folder / "patients.csv").write_text("\n\n")
    return folder


@pytest.mark.parametrize("kind,file", [("no_patients", "patients.csv"), ("missing_column", "visits.csv"),
                                       ("undecodable", "visits.csv"), ("too_many_rejects", "visits.csv"),
                                       ("no_header", "patients.csv")])
def test_fatal_exit_1_names_file_writes_nothing(tmp_path, capsys, kind, file):
    folder = fatal_case(tmp_path, kind)
    out = tmp_path / "out"
    assert cli("run", "--input", folder, "--out", out) == 1
    err = capsys.readouterr().err
    assert file in err and "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.parametrize("args", [["--as-of", "2024-13-01"], ["--bogus"], ["--set", "edss_range.nope=1"],
                                  ["--set", "nope.max=1"], ["--engine", "sqlite"], ["--set", "edss_range.max_edss=abc"]])
def test_usage_exit_2(tmp_path, args):
    folder = fatal_case(tmp_path, "ok")
    with pytest.raises(SystemExit) as exc:
        rc = cli("run", "--input", folder, "--out", tmp_path / "out", *args)
        raise SystemExit(rc)
    assert exc.value.code == 2
    assert not (tmp_path / "out").exists()


def test_run_writes_the_folder(tmp_path):
    out = tmp_path / "run"
    assert cli("run", "--input", SAMPLES / "default", "--out", out, "--as-of", "2026-11-01") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["population"] == summary["eligible"] + summary["possible"] + summary["ineligible"]
    assert {p.name for p in out.iterdir()} >= {"evaluation.parquet", "candidates.csv", "attrition.csv",
                                                "summary.json", "quarantine"}
    assert cli("run", "--input", SAMPLES / "default", "--out", out) == 2  # refuses a non-empty folder


FAST_CASES = {
    "plain": b"patient_id,site_id\nA,S1\nB,S2\n",
    "no_final_newline": b"patient_id,site_id\nA,S1\nB,S2",
    "spaces": b"patient_id , site_id\n A ,S1 \nB,  \n",
    "too_many": b"patient_id,site_id\nA,S1,x\nB,S2\n",
    "too_few": b"patient_id,site_id\nA\nB,S2\n",
    "compensating": b"patient_id,site_id\nA\nB,S2,x\n",
    "blank_line": b"patient_id,site_id\nA,S1\n\nB,S2\n",
    "quoted": b'patient_id,site_id\n"A","S1"\n"B\nC",S2\n',
    "crlf": b"patient_id,site_id\r\nA,S1\r\nB,S2\r\n",
    "bom": b"\xef\xbb\xbfpatient_id,site_id\nA,S1\n",
    "header_only": b"patient_id,site_id\n",
    "bad_utf8": b"patient_id,site_id\nA,S\xff1\n",
}


@pytest.mark.parametrize("case", sorted(FAST_CASES))
def test_fast_reader_agrees_with_the_careful_one(tmp_path, case):
    """read_simple either declines (None) or gives exactly what read_csv_text gives."""
    from pipeline.inputs.readcsv import read_simple
    path = tmp_path / "patients.csv"
    path.write_bytes(FAST_CASES[case])
    fast = read_simple(path, ",", "patients.csv")
    if case in ("plain", "no_final_newline", "spaces", "header_only"):
        assert fast is not None, "the common file must take the fast path"
    if fast is None:
        return
    slow = read_csv_text(decode(path.read_bytes(), "utf-8", "patients.csv"), ",", "patients.csv")
    assert fast.header == slow.header and fast.n_fields == slow.n_fields
    assert fast.frame.equals(slow.frame), (fast.frame, slow.frame)


def test_fast_reader_on_the_samples():
    from pipeline.inputs.readcsv import read_simple
    for path in sorted((SAMPLES / "default").glob("*.csv")):
        fast = read_simple(path, ",", path.name)
        slow = read_csv_text(decode(path.read_bytes(), "utf-8", path.name), ",", path.name)
        if fast is not None:
            assert fast.frame.equals(slow.frame), path.name


# ---- the contract's additions: mri.csv and treatments.stop_reason --------------------------

def test_stop_reason_read_only_with_an_end_date(tmp_path):
    T = {"patient_id": "A1", "drug": "Tysabri", "start_date": "2020-01-01"}
    rows = [T | {"end_date": "2021-01-01", "stop_reason": "Inefficacy"},
            T | {"end_date": "2021-01-02", "stop_reason": "ADVERSE_EVENT"},
            T | {"end_date": "2021-01-03", "stop_reason": "lack of efficacy"},  # outside the list: other
            T | {"end_date": "2021-01-04", "stop_reason": None},
            T | {"end_date": None, "stop_reason": "planned"},  # ongoing: ignored
            T | {"end_date": None, "stop_reason": "whatever"},
            T | {"end_date": "2021-01-05", "stop_reason": "Pregnancy"}]
    reg = run_ingest(write_export(tmp_path / "e", {"patients": [P()], "treatments": rows}))
    t = reg.tables["treatments"]
    assert reg.inputs["treatments"].rows_accepted == 7 and reg.quarantine["treatments"].height == 0
    assert t["stop_reason"].to_list() == ["inefficacy", "adverse_event", "other", None, None, None, "pregnancy"]
    assert t["stop_reason_given"].to_list() == ["Inefficacy", "ADVERSE_EVENT", "lack of efficacy", None, "planned",
                                                "whatever", "Pregnancy"]


def test_export_without_the_additions(tmp_path):
    """No mri.csv: an absent table; no stop_reason column: empty on every row."""
    folder = tmp_path / "e"
    write_export(folder, {"patients": [P()]})
    (folder / "treatments.csv").write_text("patient_id,drug,start_date,end_date\nA1,Tysabri,2020-01-01,2021-01-01\n"
                                           "A1,Avonex,2021-02-01,\n")
    reg = run_ingest(folder)
    assert "mri" in reg.absent and reg.inputs["mri"].as_dict() == {
        "present": False, "rows_read": 0, "rows_accepted": 0, "rows_quarantined": 0, "duplicates_dropped": 0}
    assert reg.tables["mri"].height == 0
    assert reg.tables["mri"].schema == {"patient_id": pl.Utf8, "scan_date": pl.Date, "gd_lesions": pl.Int64,
                                        "new_t2_lesions": pl.Int64}
    assert reg.tables["treatments"]["stop_reason"].to_list() == [None, None]
    assert reg.quarantine["treatments"].columns[-3:] == ["stop_reason", "_line", "_reason"]


def test_mri_rows_accounted_and_linked(tmp_path):
    M = {"patient_id": "A1", "scan_date": "2024-01-01"}
    folder = write_export(tmp_path / "e", {"patients": [P(), P("B2", site_id=None)], "mri": [
        M, M, M | {"gd_lesions": "1"}, M | {"gd_lesions": "x"}, M | {"patient_id": "B2"}, M | {"patient_id": "C3"}]})
    reg = run_ingest(folder)
    inp = reg.inputs["mri"]
    assert (inp.rows_read, inp.rows_accepted, inp.rows_quarantined, inp.duplicates_dropped) == (6, 2, 3, 1)
    assert reg.quarantine["mri"]["_line"].to_list() == [5, 6, 7]
    assert reg.quarantine["mri"]["_reason"].to_list() == [
        "gd_lesions 'x' is not a whole number", "patient_id 'B2' was quarantined in patients.csv",
        "patient_id 'C3' is not in patients.csv"]


def test_mri_and_stop_reason_in_the_regional_dialect(tmp_path):
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "export.toml").write_text('delimiter = ";"\ndecimal = ","\ndate_format = "%d.%m.%Y"\nencoding = "cp1251"\n')
    (folder / "patients.csv").write_bytes("patient_id;site_id;birth_date\nA1;Сайт 1;01.02.1980\n".encode("cp1251"))
    (folder / "MRI.csv").write_bytes(("patient_id;scan_date;gd_lesions;new_t2_lesions\n"
                                      "A1;31.03.2024;1,0;\nA1;01.04.2024;;2\nA1;2024-04-02;;\nA1;03.04.2024;1,5;\n"
                                      ).encode("cp1251"))
    (folder / "treatments.csv").write_bytes(("patient_id;drug;start_date;end_date;stop_reason\n"
                                             "A1;Tysabri;01.01.2020;01.01.2021;Беременность\n"
                                             "A1;Gilenya;02.01.2021;;\n").encode("cp1251"))
    from pipeline.core.dialect import load_dialect
    reg = run_ingest(folder, dialect=load_dialect(folder, {}))
    mri = reg.tables["mri"]
    assert mri.rows() == [("A1", dt.date(2024, 3, 31), 1, None), ("A1", dt.date(2024, 4, 1), None, 2)]
    assert reg.quarantine["mri"]["_reason"].to_list() == [
        "scan_date '2024-04-02' is not a date like 31.03.2024 (%d.%m.%Y)", "gd_lesions '1,5' is not a whole number"]
    assert reg.tables["treatments"]["stop_reason"].to_list() == ["other", None]
    assert reg.tables["treatments"]["stop_reason_given"].to_list() == ["Беременность", None]


# ---- the streaming ingest against the careful reader alone -----------------------------------

def _ingest_both(folder, monkeypatch, dialect=None):
    """(streaming, careful): the ingest as it runs, and with every file read by the careful reader
    (the fast path declined), each as its registry or the fatal error it raised."""
    import pipeline.inputs.ingest as ingest_module
    from pipeline.core.dialect import load_dialect

    dialect = dialect or load_dialect(folder, {})

    def one():
        try:
            return ingest(folder, dialect, load_vocabulary(), today=TODAY, max_reject=1.0)
        except Exception as exc:  # noqa: BLE001 - compared below
            return exc
    streamed = one()
    with monkeypatch.context() as m:
        m.setattr(ingest_module, "simple_layout", lambda *a: None)
        careful = one()
    return streamed, careful


def _assert_same_registry(a, b):
    if isinstance(b, Exception):
        assert type(a) is type(b) and str(a) == str(b), (a, b)
        return
    assert list(a.tables) == list(b.tables) and list(a.quarantine) == list(b.quarantine)
    for t in a.tables:
        assert a.tables[t].equals(b.tables[t]), t
        assert a.tables[t].n_chunks() == 1, t  # see pipeline.inputs.ingest: one chunk, as the eager reader gave
    for t in a.quarantine:
        assert a.quarantine[t].equals(b.quarantine[t]), (t, a.quarantine[t], b.quarantine[t])
    assert {t: i.as_dict() for t, i in a.inputs.items()} == {t: i.as_dict() for t, i in b.inputs.items()}


@pytest.mark.parametrize("case", sorted(FAST_CASES))
def test_streaming_ingest_equals_the_careful_one_on_odd_files(tmp_path, monkeypatch, case):
    """Each odd file as visits.csv of a small export: a scan that fails half-way (a row with too
    many fields, invalid UTF-8) falls back to the careful reader and gives exactly its result."""
    folder = write_export(tmp_path / "e", {"patients": [P("A"), P("B")]})
    body = FAST_CASES[case].replace(b"patient_id,site_id", b"patient_id,visit_date") \
        .replace(b"S1", b"2024-01-01").replace(b"S2", b"2024-02-01")
    (folder / "visits.csv").write_bytes(body)
    _assert_same_registry(*_ingest_both(folder, monkeypatch))


def test_streaming_ingest_equals_the_careful_one_on_bad_rows(tmp_path, monkeypatch):
    """Duplicates, conflicting patients, unknown patients and rule breaks, in a synthetic export with
    its planted bad rows, and in the bundled samples (both dialects)."""
    from pipeline.synth import generate
    from pipeline.synth import write_export as synth_write

    folder = tmp_path / "synth"
    synth_write(generate(300, seed=7), folder, with_bad_rows=True)
    streamed, careful = _ingest_both(folder, monkeypatch)
    assert sum(i.rows_quarantined + i.duplicates_dropped for i in streamed.inputs.values()) > 0
    _assert_same_registry(streamed, careful)
    for sample in ("default", "regional"):
        _assert_same_registry(*_ingest_both(SAMPLES / sample, monkeypatch))
