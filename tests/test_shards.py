"""A large export judged in patient shards (pipeline/inputs/shards.py) gives exactly what one judged whole gives.

Small exports are forced into shards with `--shard-patients`, and every output file is compared
byte for byte with the unsharded run's, on both engines; the ingest's shards hold exactly the
accepted rows; a golden case of each node type of the criteria language, one patient per shard
at most, gives the same evaluation as judged whole; a re-run reads the shards from the cache;
what cannot run in shards (`--history`, `--quality ge`) says so; a failed run leaves no shard
behind.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.core.dialect import Dialect
from pipeline.core.errors import EXIT_INPUT
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import load_trial
from pipeline.engines import evaluate
from pipeline.inputs import shards
from pipeline.inputs.ingest import ingest
from pipeline.synth import generate, write_export
from tests.conftest import TODAY, evaluate_export, synthetic_export
from tests.conftest import write_export as write_rows
from tests.test_golden import CASES, _as_of, _evaluation, _trial, case_id
from tests.test_properties import exports


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return synthetic_export(tmp_path_factory, "shards", seed=7)


def run(export, out, *extra):
    return main(["run", "--input", str(export), "--out", str(out), "--as-of", "2026-11-01", "--force", "--no-cache",
                 *extra])


def same_outputs(a: Path, b: Path) -> None:
    """The same files, byte for byte: every one but the run's log, and summary.json but its timings."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        if f.name not in ("run.log", "summary.json"):
            assert (a / f).read_bytes() == (b / f).read_bytes(), f
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    sa.pop("timings_seconds"), sb.pop("timings_seconds")
    assert sa == sb


def test_shard_count():
    assert shards.shard_count(0) == 1
    assert shards.shard_count(shards.PATIENTS_PER_SHARD) == 1  # just in: judged whole
    assert shards.shard_count(shards.PATIENTS_PER_SHARD + 1) == 2  # just out
    assert shards.shard_count(10, per_shard=3) == 4


@pytest.fixture(scope="module")
def whole(export, tmp_path_factory):
    """The export judged whole, once per engine."""
    done = {}

    def get(engine: str) -> Path:
        if engine not in done:
            done[engine] = tmp_path_factory.mktemp("whole") / engine
            assert run(export, done[engine], "--engine", engine) == 0
        return done[engine]
    return get


@pytest.mark.parametrize("engine,per_shard", [("polars", 40), ("duckdb", 70)])
def test_a_sharded_run_gives_the_whole_runs_outputs(export, whole, tmp_path, engine, per_shard):
    assert run(export, tmp_path / "shards", "--engine", engine, "--shard-patients", str(per_shard)) == 0
    log = (tmp_path / "shards" / "run.log").read_text()
    accepted = json.loads((whole(engine) / "summary.json").read_text())["inputs"]["patients"]["rows_accepted"]
    assert f"judged in {shards.shard_count(accepted, per_shard)} shards" in log
    assert not (tmp_path / "shards" / ".shards").exists()  # the shards are not part of the run folder
    same_outputs(whole(engine), tmp_path / "shards")


def test_the_regional_dialect_in_shards(tmp_path):
    """A cp1251 export goes through the careful reader (no streaming pass file), then into shards."""
    folder = tmp_path / "export"
    write_export(generate(120, seed=3), folder, dialect="regional", with_bad_rows=True)
    assert run(folder, tmp_path / "whole") == 0
    assert run(folder, tmp_path / "shards", "--shard-patients", "25") == 0
    same_outputs(tmp_path / "whole", tmp_path / "shards")


def test_the_shards_hold_exactly_the_accepted_rows(export, tmp_path):
    whole = ingest(export, Dialect(), load_vocabulary(), today=TODAY)
    sharded = ingest(export, Dialect(), load_vocabulary(), today=TODAY, spill=tmp_path / "s", per_shard=40)
    assert whole.shards is None
    assert sharded.n_shards == shards.shard_count(whole.inputs["patients"].rows_accepted, 40) > 5
    assert sharded.inputs == whole.inputs
    for t in whole.quarantine:
        assert sharded.quarantine[t].equals(whole.quarantine[t])
    assert sum(sharded.shard_sizes) == whole.tables["patients"].height
    parts = list(sharded.parts())
    for t, frame in whole.tables.items():
        got = pl.concat([p[t] for p in parts])
        assert got.schema == frame.schema, t
        assert got.sort(got.columns, nulls_last=True).equals(frame.sort(frame.columns, nulls_last=True)), t
        # every patient's rows in one shard, and the patient in that shard's patients
        for p in parts:
            assert p[t]["patient_id"].is_in(p["patients"]["patient_id"].implode()).all(), t
    assert not list((tmp_path / "s").glob(".*.pass.ipc"))  # the streaming passes' files are gone


@cache
def _sharded_evaluation(folder: Path, engine: str, tmp: Path) -> pl.DataFrame:
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0, spill=tmp / case_id(folder),
                 per_shard=1)
    return evaluate(reg, _trial(folder), _as_of(folder), engine)


# The first golden case of each node type (all of them would add a minute to the suite).
FIRST_CASES = [next(f for f in CASES if f.parent == t) for t in sorted({f.parent for f in CASES})]


@pytest.mark.parametrize("folder", [pytest.param(f, id=case_id(f)) for f in FIRST_CASES])
def test_golden_cases_in_shards(folder, tmp_path_factory):
    """One patient per shard at most, on both engines: the same evaluation as the case judged whole."""
    tmp = tmp_path_factory.getbasetemp() / "golden-shards"
    for engine in ("polars", "duckdb"):
        assert _sharded_evaluation(folder, engine, tmp).equals(_evaluation(folder, engine)), engine


def test_a_rerun_reads_the_shards_from_the_cache(export, whole, tmp_path):
    c = tmp_path / "cache"
    args = ["--shard-patients", "70", "--cache", str(c)]
    assert main(["run", "--input", str(export), "--out", str(tmp_path / "first"), "--as-of", "2026-11-01", *args]) == 0
    entry = next(p for p in c.iterdir() if not p.name.startswith("."))
    assert json.loads((entry / "registry.json").read_text())["shards"]["k"] == 5
    assert not (tmp_path / "first" / ".shards").exists()
    assert main(["run", "--input", str(export), "--out", str(tmp_path / "again"), "--as-of", "2026-11-01", *args,
                 "--set", "edss_range.max_edss=7.0"]) == 0
    log = (tmp_path / "again" / "run.log").read_text()
    assert "read from the cache" in log and "judged in 5 shards" in log
    assert run(export, tmp_path / "whole", "--set", "edss_range.max_edss=7.0") == 0
    same_outputs(tmp_path / "whole", tmp_path / "again")
    same_outputs(whole("polars"), tmp_path / "first")


def test_history_is_refused_in_shards(export, tmp_path, capsys):
    assert run(export, tmp_path / "out", "--shard-patients", "100", "--history", "3") == 2
    err = capsys.readouterr().err
    assert "--history needs the whole export in memory, and --shard-patients 100 cuts this one into 3 shards" in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_history_judges_the_export_whole_by_default(export, tmp_path, monkeypatch):
    """Without --shard-patients, --history never shards (it needs the export in memory), and a cached copy
    kept in shards is read afresh instead."""
    monkeypatch.setattr(shards, "PATIENTS_PER_SHARD", 100)
    monkeypatch.setattr("pipeline.run.PATIENTS_PER_SHARD", 100)
    c = ["--cache", str(tmp_path / "cache")]
    assert main(["run", "--input", str(export), "--out", str(tmp_path / "a"), "--as-of", "2026-11-01", *c]) == 0
    assert "judged in 3 shards" in (tmp_path / "a" / "run.log").read_text()
    assert main(["run", "--input", str(export), "--out", str(tmp_path / "h"), "--as-of", "2026-11-01", *c,
                 "--history", "2"]) == 0
    log = (tmp_path / "h" / "run.log").read_text()
    assert "shards" not in log and "read from the cache" not in log


def test_quality_ge_is_a_finding_error_in_shards(export, tmp_path):
    assert run(export, tmp_path / "out", "--shard-patients", "100", "--quality", "ge") == 0
    quality = json.loads((tmp_path / "out" / "summary.json").read_text())["quality"]
    assert "--quality ge needs the whole export in memory" in quality["error"]


def test_a_fatal_table_leaves_no_shards(tmp_path):
    folder = tmp_path / "export"
    write_export(generate(60, seed=2), folder)
    visits = pl.read_csv(folder / "visits.csv", infer_schema=False)
    visits.with_columns(pl.lit("not a date").alias("visit_date")).write_csv(folder / "visits.csv")
    assert run(folder, tmp_path / "out", "--shard-patients", "10") == EXIT_INPUT  # too many rows quarantined
    assert list(tmp_path.iterdir()) == [folder]


def test_sampled_quality_checks_draw_from_every_shard(tmp_path):
    """With more rows than the sample, the sampled checks see an equal share of each shard."""
    from pipeline.quality import stage as quality

    folder = tmp_path / "export"
    write_export(generate(200, seed=4), folder)
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY, spill=tmp_path / "s", per_shard=50)
    trial = load_trial("nct04203017", [])
    old = quality.SAMPLE_ROWS
    try:
        quality.SAMPLE_ROWS = 400
        found = quality.run_quality(reg, trial, TODAY)
    finally:
        quality.SAMPLE_ROWS = old
    sampled = [f for f in found["findings"] if f["sampled"]]
    assert sampled and all(f["rows_checked"] == 400 for f in sampled if f["table"] == "visits")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(exports(), st.integers(1, 3), st.sampled_from(["polars", "duckdb"]))
def test_random_exports_in_shards(tmp_path_factory, data, per_shard, engine):
    """Random exports (the engines' agreement property's), in shards of 1 to 3 patients: the same
    evaluation as judged whole, and every patient's rows in its own shard."""
    folder = write_rows(tmp_path_factory.mktemp("h") / "e", data)
    as_of = dt.date(2024, 6, 30)
    whole = evaluate_export(folder, engine, as_of)
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0,
                 spill=tmp_path_factory.mktemp("s"), per_shard=per_shard)
    assert reg.n_shards == shards.shard_count(reg.inputs["patients"].rows_accepted, per_shard)
    assert evaluate(reg, load_trial("nct04203017", []), as_of, engine).equals(whole)
