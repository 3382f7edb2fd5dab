"""The Spark ingest against the Polars ingest: same tables, quarantine, accounting, fatal messages.

Every test runs both ingests on the same folder and compares them whole (tables sorted, as
Spark keeps no row order; quarantine by line; dtypes equal), then checks the points that
the case is about. Inputs are small: the Spark part of the suite must stay about a minute.
"""

from __future__ import annotations

import polars as pl
import pytest

import schemas
import tests.test_ingest as polars_tests
from pipeline.core.dialect import Dialect, load_dialect
from pipeline.core.errors import FatalInputError
from pipeline.core.vocabulary import load_vocabulary
from pipeline.engines.spark.frames import to_polars
from pipeline.engines.spark.ingest import ingest as spark_ingest
from pipeline.engines.spark.ingest import release
from pipeline.inputs.ingest import ingest as polars_ingest
from schemas import rules
from tests.conftest import ROOT, TODAY, write_export
from tests.test_ingest import P, fatal_case

pytestmark = pytest.mark.xdist_group("spark")

SAMPLES = ROOT / "data_samples"


def run_both(spark, folder, dialect=None, max_reject=1.0):
    dialect = dialect or load_dialect(folder, {})
    a = polars_ingest(folder, dialect, load_vocabulary(), today=TODAY, max_reject=max_reject)
    b = spark_ingest(spark, folder, dialect, load_vocabulary(), today=TODAY, max_reject=max_reject)
    return a, b


def spark_frames(reg) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    """(A run collects the quarantine to Polars right after its ingest: those frames are taken as they are.)"""
    def polars(f):
        return f if isinstance(f, pl.DataFrame) else to_polars(f)
    return ({t: polars(f) for t, f in reg.tables.items()}, {t: polars(f) for t, f in reg.quarantine.items()})


def assert_same(a, b, *, files_differ: bool = False, keep: bool = False) -> tuple[dict, dict]:
    """`b` (Spark) holds what `a` (Polars) holds; returns b's tables and quarantine as Polars frames
    (and frees b's cache unless `keep`)."""
    tables, quarantine = spark_frames(b)
    assert list(tables) == list(a.tables) and list(quarantine) == list(a.quarantine)
    for t, x in a.tables.items():
        y = tables[t]
        assert y.schema == x.schema, (t, y.schema, x.schema)
        assert y.sort(y.columns, nulls_last=True).equals(x.sort(x.columns, nulls_last=True)), t
    for t, x in a.quarantine.items():
        y = quarantine[t].sort("_line")
        assert y.schema == x.schema, (t, y.schema, x.schema)
        assert y.equals(x.sort("_line")), (t, x, y)
    for t, x in a.inputs.items():
        y = b.inputs[t]
        if files_differ and y.file:
            y = type(y)(**{**y.__dict__, "file": x.file})
        assert y == x, (t, x, y)
    assert b.absent == a.absent
    if not keep:
        release(b)
    return tables, quarantine


def fatal_message(fn) -> str:
    with pytest.raises(FatalInputError) as exc:
        fn()
    return str(exc.value)


def assert_same_fatal(spark, folder, dialect=None, max_reject=1.0) -> str:
    dialect = dialect or Dialect()
    want = fatal_message(lambda: polars_ingest(folder, dialect, load_vocabulary(), today=TODAY,
                                               max_reject=max_reject))
    got = fatal_message(lambda: spark_ingest(spark, folder, dialect, load_vocabulary(), today=TODAY,
                                             max_reject=max_reject))
    assert got == want
    return got


# The samples (both dialects) are compared whole, tables, quarantine and plans, inside the Spark
# runs of tests/test_spark_run.py::test_samples_identical_to_polars: one Spark ingest each.

# ---- row rules, duplicates, links: the cases of test_ingest, all in one export ------------------

ROW_CASES = next(m for m in polars_tests.test_row_rule.pytestmark if m.name == "parametrize").args[1]


def test_row_rules_as_the_polars_ingest(spark, tmp_path):
    """Every case of test_ingest.test_row_rule, as rows of one export (patients renamed apart so
    that they do not conflict), gives the same reasons; each case's reason is at its line."""
    tables: dict[str, list[dict]] = {"patients": [P()]}
    where = []
    for i, (table, row, ok, reason) in enumerate(ROW_CASES):
        if table == "patients" and row["patient_id"] == "A1":
            row = row | {"patient_id": f"R{i}"}
        tables.setdefault(table, []).append(row)
        where.append((table, len(tables[table]) + 1, ok, reason))
    a, b = run_both(spark, write_export(tmp_path / "e", tables))
    _, quarantine = assert_same(a, b)
    for table, line, ok, reason in where:
        found = quarantine[table].filter(pl.col("_line") == line)["_reason"].to_list()
        assert (not found) is ok, (table, line, found)
        if not ok:
            assert reason in found[0], (table, line, found)


def test_duplicates_conflicts_lines_and_field_counts(spark, tmp_path):
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "PATIENTS.CSV").write_text(
        "\ufeff Patient_ID , site_id,sex\n\nA1,S1,F\nA1 , S1 ,F\nB2,S1,F\nB2,S2,F\n\"C3\",\"S\n1\",M\nD4,S1,F,extra\n"
        "E5\nF6,S1,F\nF6,S1,M\nF6,S2,M\nF6,S3,M\nF6,S4,M\nF6,S5,M\n")
    (folder / "visits.csv").write_text("patient_id,visit_date,edss\nB2,2024-01-01,1\nC3,2024-01-01,1\n"
                                       "ZZ,2024-01-01,11\nA1,2024-01-01,1\nA1,2024-01-01,1\n,2024-01-01,\n")
    a, b = run_both(spark, folder)
    tables, quarantine = assert_same(a, b)
    assert (b.inputs["patients"].rows_read, b.inputs["patients"].duplicates_dropped) == (13, 1)
    reasons = dict(quarantine["patients"].select("_line", "_reason").iter_rows())
    assert reasons[5] == "patient_id 'B2' is on 2 rows with different content (lines 5, 6)"
    assert reasons[11] == "patient_id 'F6' is on 6 rows with different content (lines 11, 12, 13, 14, 15 and 1 more)"
    assert "row has 4 fields where the header has 3" in reasons[9]
    assert sorted(tables["patients"]["site_id"].to_list()) == ["S\n1", "S1"]
    visits = dict(quarantine["visits"].select("_line", "_reason").iter_rows())
    assert "edss '11'" in visits[4] and "patient_id 'ZZ' is not in patients.csv" in visits[4]


def test_additions_and_the_regional_dialect(spark, tmp_path):
    """mri.csv and stop_reason (test_ingest's cases), in cp1251 with ';', ',' and day-first dates; the
    folder's name has what Spark's readers take for a glob."""
    folder = tmp_path / "export [2026] {x}"
    folder.mkdir()
    (folder / "export.toml").write_text('delimiter = ";"\ndecimal = ","\ndate_format = "%d.%m.%Y"\nencoding = "cp1251"\n')
    (folder / "patients.csv").write_bytes("patient_id;site_id;birth_date\nA1;Сайт 1;01.02.1980\nB2;;\n"
                                          .encode("cp1251"))
    (folder / "MRI.csv").write_bytes(("patient_id;scan_date;gd_lesions;new_t2_lesions\n"
                                      "A1;31.03.2024;1,0;\nA1;01.04.2024;;2\nA1;2024-04-02;;\nA1;03.04.2024;1,5;\n"
                                      "B2;31.03.2024;;\nA1;31.03.2024;1,0;\n").encode("cp1251"))
    (folder / "treatments.csv").write_bytes(("patient_id;drug;start_date;end_date\n"
                                             "A1;Tysabri;01.01.2020;01.01.2021\nA1;Gilenya;02.01.2021;\n"
                                             "A1;Zinbryta;02.01.2021;\n").encode("cp1251"))
    a, b = run_both(spark, folder)
    tables, quarantine = assert_same(a, b)
    assert b.absent == ["visits", "relapses", "labs", "function_tests", "conditions"]
    assert tables["mri"].height == 2 and b.inputs["mri"].duplicates_dropped == 1
    assert tables["treatments"]["stop_reason"].to_list() == [None, None]


# ---- reading: line ends, blocks, encodings ----------------------------------------------------

def test_lines_across_many_partitions(spark, tmp_path):
    """A file cut into many small Spark blocks, with CR-only line ends, blank lines, a BOM and quoted
    fields spanning lines across block boundaries: every line number as the Polars reader counts."""
    rows = []
    for i in range(60):
        site = f'"S\r{i}\r\r,x"' if i % 7 == 3 else f"S{i}"
        birth = "1899-01-01" if i % 11 == 5 else "1980-01-01"
        rows.append(f"P{i},{site},F,{birth}" + ("\r\r" if i % 13 == 4 else ""))
    text = "\ufeffpatient_id,site_id,sex,birth_date\r" + "\r".join(rows) + "\rP1,S1,F,1980-01-01\r"
    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "patients.csv").write_bytes(text.encode("utf-8"))
    (folder / "relapses.csv").write_bytes(b"patient_id,onset_date\r\nP3,2020-01-01\r\nP5,bad\r\nP99,2020-01-01")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "200")
    try:
        assert spark.read.text(str(folder / "patients.csv")).rdd.getNumPartitions() >= 5
        a, b = run_both(spark, folder)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    tables, quarantine = assert_same(a, b)
    assert sorted(tables["patients"].filter(pl.col("site_id").str.contains("\n"))["site_id"].to_list())[0] \
        == "S\n10\n\n,x"
    # Row i is on line 2 + i + 3 per earlier row with a 4-line field + 2 per earlier row with 2 blank lines.
    assert sorted(quarantine["patients"]["_line"].to_list()) == [12, 26, 45, 61, 80]


def test_an_encoding_that_is_not_ascii_compatible_is_refused_clearly(spark, tmp_path):
    folder = write_export(tmp_path / "e", {"patients": [P()]})
    msg = fatal_message(lambda: spark_ingest(spark, folder, Dialect(encoding="utf-16"), load_vocabulary(),
                                             today=TODAY))
    assert msg.startswith("patients.csv: cannot be read as 'utf-16' by the Spark engine")


# ---- fatal errors: the same messages ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["no_patients", "missing_column", "undecodable", "too_many_rejects", "no_header"])
def test_fatal_as_the_polars_ingest(spark, tmp_path, kind):
    folder = fatal_case(tmp_path, kind)
    assert_same_fatal(spark, folder, max_reject=0.05)


def test_fatal_quoting_and_order(spark, tmp_path):
    """A broken quote (by line, without the content); one in patients.csv comes before an undecodable
    visits.csv, as in the Polars ingest; cp1251 decoding errors name their line."""
    folder = write_export(tmp_path / "e", {"patients": [P()]})
    (folder / "patients.csv").write_text('patient_id,site_id\nA1,S1\nB2,"S1\nC3,SECRET"X\n')
    (folder / "visits.csv").write_bytes(b"patient_id,visit_date\n\xff,2024-01-01\n")
    msg = assert_same_fatal(spark, folder)
    assert "line 3" in msg and "SECRET" not in msg
    (folder / "patients.csv").write_text("patient_id,site_id\nA1,S1\n")
    assert "line 2" in assert_same_fatal(spark, folder)
    cp = Dialect(encoding="cp1252")  # 0x81 is undefined in cp1252
    (folder / "visits.csv").write_bytes(b"patient_id,visit_date\nA1,2024-01-01\r\n\r\nA1,\x81\n")
    assert "line 4" in assert_same_fatal(spark, folder, dialect=cp)


def test_csv_and_parquet_of_one_table_is_fatal(spark, tmp_path):
    folder = write_export(tmp_path / "e", {"patients": [P()]})
    pl.DataFrame({"patient_id": ["A1"], "site_id": ["S1"]}).write_parquet(folder / "Patients.parquet")
    msg = fatal_message(lambda: spark_ingest(spark, folder, Dialect(), load_vocabulary(), today=TODAY))
    assert msg.startswith("patients.csv: 2 files in") and "Patients.parquet" in msg and "keep one" in msg


# ---- Parquet input -----------------------------------------------------------------------------

def _typed_sample(path, table: str) -> pl.DataFrame:
    """A sample CSV with the contract's types, as a registry would write it to Parquet (a value that does
    not parse is null there)."""
    d = Dialect()
    raw = pl.read_csv(path, infer_schema=False)
    parse = {"date": lambda e: rules.parse_date(e, d), "float": lambda e: rules.parse_float(e, d),
             "int": lambda e: rules.parse_int(e, d), "str": lambda e: e}
    return raw.select(parse[c.type](pl.col(c.name)).alias(c.name) for c in schemas.TABLES[table]
                      if c.name in raw.columns)


def test_parquet_input_as_the_csv_input(spark, tmp_path):
    """Parquet files written from the default sample give what the same rows as CSV give."""
    as_csv, as_parquet = tmp_path / "csv", tmp_path / "parquet"
    as_csv.mkdir()
    as_parquet.mkdir()
    for path in sorted((SAMPLES / "default").glob("*.csv")):
        table = path.stem.lower()
        frame = _typed_sample(path, table)
        if table == "visits":
            frame = frame.head(5000)  # enough for every rule; the whole table is tested as CSV
        frame.write_csv(as_csv / f"{table}.csv", null_value="")
        frame.write_parquet(as_parquet / f"{table}.parquet", row_group_size=1000)
    a = polars_ingest(as_csv, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    b = spark_ingest(spark, as_parquet, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    assert_same(a, b, files_differ=True)
    assert b.inputs["patients"].file == "patients.parquet"
    assert sum(i.rows_quarantined for i in b.inputs.values()) > 0


def test_parquet_of_text_columns_is_read_as_a_default_dialect_csv(spark, tmp_path):
    """A warehouse may write every column as text: dates ISO, numbers with '.', judged by the same rules."""
    import polars as pl

    from pipeline.core.dialect import Dialect
    from pipeline.core.vocabulary import load_vocabulary
    from pipeline.engines.spark.frames import to_polars
    from pipeline.engines.spark.ingest import ingest as spark_ingest
    from pipeline.inputs.ingest import ingest as polars_ingest
    from tests.conftest import TODAY, write_export

    rows = [{"patient_id": "P1", "site_id": "S1", "sex": "F", "birth_date": "1980-02-29", "ms_course": "RRMS"},
            {"patient_id": "P2", "site_id": "S1", "sex": "M", "birth_date": "29.02.1980", "ms_course": "RRMS"}]
    visits = [{"patient_id": "P1", "visit_date": "2024-01-01", "edss": "3.5"},
              {"patient_id": "P1", "visit_date": "2024-02-01", "edss": "3,5"}]
    csv = write_export(tmp_path / "csv", {"patients": rows, "visits": visits})
    pq = tmp_path / "pq"
    pq.mkdir()
    for f in csv.glob("*.csv"):
        pl.read_csv(f, infer_schema=False).write_parquet(pq / f"{f.stem}.parquet")
    want = polars_ingest(csv, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    got = spark_ingest(spark, pq, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    for t in ("patients", "visits"):
        assert to_polars(got.tables[t]).sort("patient_id").equals(want.tables[t].sort("patient_id")), t
        q = to_polars(got.quarantine[t]).sort("_line")
        assert q["_reason"].to_list() == want.quarantine[t].sort("_line")["_reason"].to_list(), t
    assert got.inputs["patients"].rows_quarantined == 1 and got.inputs["visits"].rows_quarantined == 1
