"""sql/trials/ holds the SQL of each bundled trial per dialect; it must match what the compiler makes now."""

from __future__ import annotations

import pytest
import sqlglot

from pipeline.criteria.load import bundled_trials, load_trial
from pipeline.criteria.to_sql import DIALECTS, criterion_query
from pipeline.engines.sql_snapshot import snapshot_path, trial_sql
from tests.conftest import ROOT

FOLDER = ROOT / "sql" / "trials"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("trial_id", bundled_trials())
def test_snapshot_is_current(trial_id, dialect):
    path = snapshot_path(FOLDER, trial_id, dialect)
    assert path.is_file(), f"{path} is missing: run `make sql`"
    assert path.read_text("utf-8") == trial_sql(load_trial(trial_id), dialect), f"{path} is stale: run `make sql`"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_generated_sql_parses_back(dialect):
    """What is rendered for a dialect is valid SQL of that dialect (sqlglot reads it back)."""
    for c in load_trial("nct04203017").criteria:
        text = criterion_query(c.node).sql(dialect=dialect)
        assert sqlglot.parse_one(text, read=dialect) is not None


def test_values_are_literals_not_text():
    """A value with a quote in it stays one string literal (no pasted SQL)."""
    trial = load_trial("nct04203017", ["no_second_tumor.excluded_code_prefixes=[C4' OR 1=1 --]"])
    sql = criterion_query(trial.criteria[7].node).sql(dialect="duckdb")
    assert "'C4'' OR 1=1 --'" in sql
    literals = [lit.this for lit in sqlglot.parse_one(sql, read="duckdb").find_all(sqlglot.exp.Literal)]
    assert "C4' OR 1=1 --" in literals


def test_shipped_compiled_queries_are_current():
    """sql/compiled/ holds exactly the bundled trials' DuckDB queries as the compiler builds them now
    (a stale entry would never be read, its key no longer matching: this keeps the folder useful)."""
    from pipeline.engines.sql_snapshot import compiled_entries

    folder = ROOT / "sql" / "compiled"
    want = compiled_entries()
    have = {p.name: p.read_text("utf-8") for p in folder.glob("*.json")}
    assert sorted(have) == sorted(want), "sql/compiled/ is stale: run `make sql`"
    assert have == want, "sql/compiled/ is stale: run `make sql`"


def test_a_bundled_trial_runs_without_building_sql(tmp_path):
    """A first DuckDB run of a bundled trial, no cache, reads its queries from sql/compiled/: sqlglot is
    not imported. With a changed parameter the query is built, and sqlglot is."""
    import subprocess
    import sys

    args = ["run", "--input", str(ROOT / "data_samples" / "default"), "--as-of", "2026-11-01", "--no-cache",
            "--engine", "duckdb"]
    probe = ("import sys; sys.argv = ['msfeas', *sys.argv[1:]]\n"
             "from pipeline.cli import main\ncode = main()\n"
             "print('sqlglot' in sys.modules)\nsys.exit(code)")
    for n, (extra, imported) in enumerate((([], "False"), (["--set", "edss_range.max_edss=7.0"], "True"))):
        done = subprocess.run([sys.executable, "-c", probe, *args, "--out", str(tmp_path / f"r{n}"), *extra],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == imported
