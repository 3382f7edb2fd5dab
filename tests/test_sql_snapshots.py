"""sql/trials/ holds the SQL of each bundled trial per dialect; it must match what the compiler makes now."""

from __future__ import annotations

import pytest
import sqlglot

from pipeline.criteria.load import bundled_trials, load_trial
from pipeline.criteria.snapshot import snapshot_path, trial_sql
from pipeline.criteria.to_sql import DIALECTS, criterion_query
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
