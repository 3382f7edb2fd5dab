"""NCT04203017 as a trial file of nodes gives, to the byte, what the hand-written rules gave.

The fixtures in tests/fixtures/legacy_nct04203017/ were written by the last version
with one Polars function and one SQL file per rule (commit 0c63e6b), on both samples,
at two reference dates. Both engines must reproduce evaluation.parquet, candidates.csv,
attrition.csv and the parameters and counts of summary.json exactly.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pipeline.core import files
from pipeline.core.dialect import load_dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import load_trial
from pipeline.engines import evaluate
from pipeline.inputs.ingest import ingest
from pipeline.outputs import tables
from tests.conftest import ENGINES, ROOT, TODAY

FIXTURES = ROOT / "tests" / "fixtures" / "legacy_nct04203017"
CASES = sorted(p.name for p in FIXTURES.iterdir())
_registries: dict[str, object] = {}


def registry(dialect: str):
    if dialect not in _registries:
        folder = ROOT / "data_samples" / dialect
        _registries[dialect] = ingest(folder, load_dialect(folder, {}), load_vocabulary(), today=TODAY)
    return _registries[dialect]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES)
def test_outputs_match_the_hand_written_rules(case, engine, tmp_path):
    dialect, as_of = case.split("-", 1)
    trial = load_trial("nct04203017")
    evaluation = evaluate(registry(dialect), trial, dt.date.fromisoformat(as_of), engine)
    want = FIXTURES / case
    evaluation.write_parquet(tmp_path / "evaluation.parquet", statistics=False)
    assert (tmp_path / "evaluation.parquet").read_bytes() == (want / "evaluation.parquet").read_bytes()
    for name, frame in (("candidates.csv", tables.candidates(evaluation, trial)),
                        ("attrition.csv", tables.attrition(evaluation, trial))):
        files.write_csv(frame, tmp_path / name)
        assert (tmp_path / name).read_bytes() == (want / name).read_bytes(), name
    summary = json.loads((want / "summary.json").read_text())
    assert trial.parameters_record() == summary["parameters"]
    assert tables.counts(evaluation) == {k: summary[k] for k in tables.counts(evaluation)}
    assert tables.by_site(evaluation) == summary["by_site"]
