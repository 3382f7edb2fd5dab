"""Golden cases of the criteria language: every node type at its boundaries, on every engine (Spark too).

Each folder `tests/golden/<node_type>/<case>/` holds
- `criterion.toml`: a trial file with exactly one criterion (comments say what each patient tests);
- `as_of.txt`: the reference date D;
- the export: `patients.csv` and only the tables the case needs (an absent table is absent on purpose);
- `expected.csv`: `patient_id,status,<evidence...>`, values as the evaluation writes them (floats as
  Python repr, dates ISO, empty for null).

Each case is ingested once and evaluated on both engines; status and evidence must equal
expected.csv exactly, and the two engines' evaluations must be identical. Cases that document a
known bug expect the correct behaviour and are strict xfails (see KNOWN_BUGS).

Meta-tests: every node type has golden cases, and every compiler (Polars, SQL, text) has a
function for every node type.
"""

from __future__ import annotations

import csv
import datetime as dt
from functools import cache
from pathlib import Path

import polars as pl
import pytest

import schemas
from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import to_polars, to_sql, to_text
from pipeline.criteria.load import Criterion, Trial, load_trial
from pipeline.criteria.nodes import NODE_TYPES
from pipeline.engines import ALL_ENGINES, evaluate
from pipeline.inputs.ingest import Registry, ingest
from tests.conftest import ENGINES, SPARK, TODAY, spark_registry

GOLDEN = Path(__file__).resolve().parent / "golden"
CASE_FILES = {"criterion.toml", "as_of.txt", "expected.csv"}
CASES = sorted(p for p in GOLDEN.glob("*/*") if p.is_dir())


def case_id(folder: Path) -> str:
    return f"{folder.parent.name}/{folder.name}"


# case -> (which of its tests fail: "polars", "duckdb", "agree"; the bug). Each expects the correct behaviour.
KNOWN_BUGS: dict[str, tuple[set[str], str]] = {
}


def _params(kind: str) -> list:
    out = []
    for folder in CASES:
        cid = case_id(folder)
        fails, reason = KNOWN_BUGS.get(cid, (set(), ""))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if kind in fails else []
        out.append(pytest.param(folder, id=cid, marks=marks))
    return out


# ---------------------------------------------------------------- loading a case (cached: one ingest per case)

@cache
def _vocabulary():
    return load_vocabulary()


@cache
def _trial(folder: Path) -> Trial:
    return load_trial(str(folder / "criterion.toml"))


def _criterion(folder: Path) -> Criterion:
    trial = _trial(folder)
    assert len(trial.criteria) == 1, "a golden case has exactly one criterion"
    return trial.criteria[0]


def _as_of(folder: Path) -> dt.date:
    return dt.date.fromisoformat((folder / "as_of.txt").read_text("utf-8").strip())


@cache
def _registry(folder: Path) -> Registry:
    return ingest(folder, Dialect(), _vocabulary(), today=TODAY, max_reject=1.0)


@cache
def _evaluation(folder: Path, engine: str) -> pl.DataFrame:
    reg = spark_registry(_registry(folder)) if engine == "spark" else _registry(folder)
    return evaluate(reg, _trial(folder), _as_of(folder), engine)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _expected(folder: Path) -> tuple[list[str], list[list[str]]]:
    with open(folder / "expected.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], sorted(rows[1:])


def _actual(folder: Path, engine: str) -> list[list[str]]:
    crit = _criterion(folder)
    ev = _evaluation(folder, engine)
    cols = [crit.id, *[f"{crit.id}__{n}" for n in crit.evidence]]
    assert ev.columns == ["patient_id", "site_id", "status", *cols]
    return sorted([_text(v) for v in row] for row in ev.select("patient_id", *cols).iter_rows())


# ---------------------------------------------------------------- the cases

@pytest.mark.parametrize("folder", _params("clean"))
def test_golden_case_is_well_formed(folder):
    """The folder holds a loadable one-criterion trial of its node type, a clean export and a matching expected.csv."""
    files = {p.name for p in folder.iterdir()}
    tables = {f"{t}.csv" for t in schemas.TABLES}
    assert CASE_FILES | {"patients.csv"} <= files, f"missing {sorted(CASE_FILES | {'patients.csv'} - files)}"
    assert files <= CASE_FILES | tables, f"unexpected files {sorted(files - CASE_FILES - tables)}"
    for name in sorted(files & tables):
        table = name[:-4]
        with open(folder / name, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f))
        required = {c.name for c in schemas.TABLES[table] if not c.optional}
        assert required <= set(header) <= {c.name for c in schemas.TABLES[table]}, name
    header, rows = _expected(folder)
    with open(folder / "patients.csv", newline="", encoding="utf-8") as f:
        ids = sorted(r["patient_id"] for r in csv.DictReader(f))
    assert [r[0] for r in rows] == ids, "expected.csv must list every patient once"
    assert all(len(r) == len(header) and r[1] in ("pass", "fail", "unknown", "screening") for r in rows)
    assert _as_of(folder) < TODAY
    crit = _criterion(folder)
    assert folder.parent.name in {n.type for n in crit.node.walk()}, "the case does not use its folder's node type"
    assert header == ["patient_id", "status", *crit.evidence]
    assert crit.judged and crit.settle  # the text renderer handles every node of the tree
    # A typo in a golden export must not silently drop rows.
    reg = _registry(folder)
    for table, inp in reg.inputs.items():
        assert (inp.present, inp.rows_quarantined, inp.duplicates_dropped) == ((folder / f"{table}.csv").exists(), 0, 0), \
            (table, reg.quarantine.get(table))


@pytest.mark.parametrize("folder,engine", [
    pytest.param(p.values[0], engine, id=f"{p.id}-{engine}", marks=[*p.marks, *([SPARK] if engine == "spark" else [])])
    for engine in ALL_ENGINES for p in _params(engine)])
def test_golden_case(folder, engine):
    """Status and evidence of every patient equal expected.csv, on each engine."""
    _check(folder, engine)


def _check(folder: Path, engine: str):
    header, expected = _expected(folder)
    actual = _actual(folder, engine)
    if actual != expected:
        if len(actual) != len(expected):
            pytest.fail(f"{case_id(folder)} on {engine}: {len(actual)} patients, expected {len(expected)}")
        diff = [f"  {a}\n    expected {e}" for a, e in zip(actual, expected) if a != e]
        pytest.fail(f"{case_id(folder)} on {engine}: columns {header}\n" + "\n".join(diff))


@pytest.mark.parametrize("folder", _params("agree"))
def test_golden_engines_identical(folder):
    a, b = (_evaluation(folder, e) for e in ENGINES)
    assert a.equals(b), f"polars:\n{a}\nduckdb:\n{b}"


@SPARK
@pytest.mark.parametrize("folder", _params("agree"))
def test_golden_spark_identical(folder):
    """Spark's evaluation (tables moved to Spark with to_spark) is identical to DuckDB's, frame for frame."""
    a, b = _evaluation(folder, "duckdb"), _evaluation(folder, "spark")
    assert a.equals(b), f"duckdb:\n{a}\nspark:\n{b}"


# ---------------------------------------------------------------- meta-tests

def test_every_node_type_has_golden_cases():
    covered = {folder.parent.name for folder in CASES if case_id(folder) not in KNOWN_BUGS}
    missing = [t for t in NODE_TYPES if t not in covered]
    assert not missing, f"node types without a golden case in tests/golden/<type>/<case>/: {missing}"


def test_golden_folders_are_node_types():
    unknown = sorted({p.name for p in GOLDEN.iterdir() if p.is_dir()} - set(NODE_TYPES))
    assert not unknown, f"tests/golden has folders that are not node types: {unknown}"
    assert set(KNOWN_BUGS) <= {case_id(f) for f in CASES}, "KNOWN_BUGS names a case that does not exist"


@pytest.mark.parametrize("name,table", [
    ("pipeline.criteria.to_polars.COMPILERS", to_polars.COMPILERS),
    ("pipeline.criteria.to_sql.COMPILERS", to_sql.COMPILERS),
    ("pipeline.criteria.to_text.SENTENCES", to_text.SENTENCES),
    ("pipeline.criteria.to_text.SETTLES", to_text.SETTLES),
])
def test_every_node_type_has_a_compiler(name, table):
    missing = [t for t in NODE_TYPES if t not in table]
    assert not missing, f"{name} has no function for node types {missing}"
    assert set(table) <= set(NODE_TYPES), f"{name} compiles unknown node types {sorted(set(table) - set(NODE_TYPES))}"
