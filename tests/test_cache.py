"""The cache of validated exports: a re-run on the same bytes reads them back and gives exactly the
outputs of an uncached run; any byte changed is a miss; the folder is the owner's only."""

from __future__ import annotations

import json
import stat

import pytest

from pipeline.cli import main
from pipeline.ops import export_cache as cache
from tests.conftest import synthetic_export

FILES = ["evaluation.parquet", "candidates.csv", "attrition.csv", "site_counts.csv", "summary_public.json",
         "report.html", "quarantine/visits.csv", "quarantine/patients.csv", "quality/visits.json"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return synthetic_export(tmp_path_factory, "cache", seed=5)


def run(export, out, *extra):
    return main(["run", "--input", str(export), "--out", str(out), "--as-of", "2026-11-01", "--force", *extra])


def same_outputs(a, b):
    for f in FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    sa.pop("timings_seconds"), sb.pop("timings_seconds")
    assert sa == sb


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_a_cached_rerun_gives_the_uncached_outputs(export, tmp_path, monkeypatch, engine):
    c = tmp_path / "cache"
    assert run(export, tmp_path / "first", "--cache", str(c), "--engine", engine) == 0
    import pipeline.inputs.ingest
    import pipeline.quality.stage

    def no(*a, **k):
        raise AssertionError("a cached re-run must not validate nor run the quality suites again")
    monkeypatch.setattr(pipeline.inputs.ingest, "ingest", no)
    monkeypatch.setattr(pipeline.quality.stage, "run_quality", no)
    assert run(export, tmp_path / "cached", "--cache", str(c), "--engine", engine,
               "--set", "edss_range.max_edss=7.0") == 0
    monkeypatch.undo()
    assert run(export, tmp_path / "fresh", "--no-cache", "--engine", engine, "--set", "edss_range.max_edss=7.0") == 0
    same_outputs(tmp_path / "cached", tmp_path / "fresh")


def test_any_byte_changed_is_a_miss(export, tmp_path):
    c = tmp_path / "cache"
    changed = tmp_path / "changed"
    changed.mkdir()
    for f in export.iterdir():
        (changed / f.name).write_bytes(f.read_bytes())
    assert run(changed, tmp_path / "a", "--cache", str(c)) == 0
    text = (changed / "visits.csv").read_bytes()
    i = text.index(b"\n", len(text) // 2) + 1  # a line in the middle: one byte of its date
    line_end = text.index(b"\n", i)
    date_at = text.index(b",", i) + 1 + 3  # the year's last digit
    assert date_at < line_end
    flipped = text[:date_at] + (b"1" if text[date_at:date_at + 1] != b"1" else b"2") + text[date_at + 1:]
    (changed / "visits.csv").write_bytes(flipped)
    assert len([p for p in c.iterdir() if not p.name.startswith(".")]) == 1
    assert run(changed, tmp_path / "b", "--cache", str(c)) == 0
    assert len([p for p in c.iterdir() if not p.name.startswith(".")]) == 2  # a miss: a new entry
    assert run(changed, tmp_path / "fresh", "--no-cache") == 0
    same_outputs(tmp_path / "b", tmp_path / "fresh")


def test_the_key_sees_every_byte_of_every_block(tmp_path, monkeypatch):
    """The export is hashed in blocks, several at a time: a byte changed in any block, a file cut at
    a block's edge or grown by one byte, a file renamed, each gives another key."""
    import datetime as dt

    from pipeline.core.dialect import Dialect
    from pipeline.core.vocabulary import load_vocabulary

    monkeypatch.setattr(cache, "BLOCK", 16)
    folder = tmp_path / "e"
    folder.mkdir()
    body = bytes(range(256)) * 3
    (folder / "patients.csv").write_bytes(body)
    (folder / "visits.csv").write_bytes(body[:40])

    def key():
        return cache.export_key(folder, Dialect(), load_vocabulary(None), dt.date(2026, 11, 1), 0.05)

    first = key()
    assert key() == first
    seen = {first}
    for change in (lambda b: b[:100] + b"x" + b[101:], lambda b: b[:-1] + b"y", lambda b: b[:32], lambda b: b + b"\0"):
        (folder / "patients.csv").write_bytes(change(body))
        seen.add(key())
    (folder / "patients.csv").write_bytes(body)
    assert key() == first
    (folder / "visits.csv").rename(folder / "relapses.csv")
    seen.add(key())
    assert len(seen) == 6


def test_the_cache_is_the_owners_only_and_bounded(export, tmp_path, monkeypatch):
    c = tmp_path / "cache"
    monkeypatch.setattr(cache, "KEEP", 2)
    for day in ("2026-11-10", "2026-11-11", "2026-11-12"):  # "today" is part of the key: three entries
        monkeypatch.setenv("MSFEAS_TODAY", day)
        assert main(["run", "--input", str(export), "--out", str(tmp_path / day), "--as-of", "2026-11-01",
                     "--cache", str(c)]) == 0
    entries = [p for p in c.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 2
    assert stat.S_IMODE(c.stat().st_mode) == 0o700
    parquet = next(entries[0].glob("tables/*.parquet"))
    assert stat.S_IMODE(parquet.stat().st_mode) == 0o600


def test_no_cache_stores_nothing(export, tmp_path, monkeypatch):
    monkeypatch.setenv("MSFEAS_CACHE", str(tmp_path / "default"))
    assert run(export, tmp_path / "a", "--no-cache") == 0
    assert not (tmp_path / "default").exists()
    assert run(export, tmp_path / "b") == 0  # the default: $MSFEAS_CACHE
    assert any((tmp_path / "default").iterdir())


def test_a_cached_rerun_loads_no_validation_or_quality_stack(export, tmp_path):
    """What makes a what-if re-run fast: with the export and its findings cached, neither pandera,
    great-expectations, pandas nor pyspark is imported (each costs about a second to import), and with
    the polars engine neither sqlglot nor duckdb (half a second)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MSFEAS_CACHE": str(tmp_path / "cache")}
    args = ["run", "--input", str(export), "--out", str(tmp_path / "r"), "--as-of", "2026-11-01", "--force"]
    probe = ("import sys, runpy; sys.argv = ['msfeas', *sys.argv[1:]]\n"
             "from pipeline.cli import main\ncode = main()\n"
             "print(sorted(m for m in ('pandera', 'great_expectations', 'pandas', 'pyspark', 'sqlglot', 'duckdb')\n"
             "             if m in sys.modules))\n"
             "sys.exit(code)")
    first = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([sys.executable, "-c", probe, *args, "--set", "edss_range.max_edss=7.0"], env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == "[]", again.stdout
    assert "pandera" in first.stdout.strip().splitlines()[-1]  # the probe sees imports: the first run validated


def test_compiled_queries_kept_exactly(tmp_path, monkeypatch):
    """A criterion's DuckDB query read back from the cache is the one sqlglot builds; another
    parameter value, another dialect or other compiler code is another entry; a damaged entry is
    rebuilt; without a folder nothing is kept."""
    from pipeline.criteria import load_trial
    from pipeline.engines import duckdb_engine, sql_cache

    trial = load_trial("nct04203017")
    other = load_trial("nct04203017", ["edss_range.max_edss=7.0"])
    built = {c.id: duckdb_engine._compile(c) for c in trial.criteria}
    folder = tmp_path / "sql"
    shipped = sql_cache.shipped_dir
    sql_cache.shipped_dir = lambda: tmp_path / "none shipped"  # the user's cache alone, here
    try:
        sql_cache.use(None)
        assert duckdb_engine.criterion_sql(trial.criteria[0]) == built[trial.criteria[0].id]
        assert not folder.exists()
        sql_cache.use(folder)
        first = {c.id: duckdb_engine.criterion_sql(c) for c in trial.criteria}
        assert first == built and stat.S_IMODE(folder.stat().st_mode) == 0o700
        monkeypatch.setattr(duckdb_engine, "_compile", lambda c: pytest.fail("compiled again"))
        assert {c.id: duckdb_engine.criterion_sql(c) for c in trial.criteria} == built  # read back
        edss = next(c for c in other.criteria if c.id == "edss_range")
        assert sql_cache.key(edss.node, "duckdb") != sql_cache.key(next(c for c in trial.criteria if c.id == "edss_range").node, "duckdb")
        assert sql_cache.key(edss.node, "duckdb") != sql_cache.key(edss.node, "spark")
        entry = folder / f"{sql_cache.key(trial.criteria[0].node, 'duckdb')}.json"
        entry.write_text("{not json")
        monkeypatch.undo()
        assert duckdb_engine.criterion_sql(trial.criteria[0]) == built[trial.criteria[0].id]
        assert json.loads(entry.read_text())["sql"] == built[trial.criteria[0].id][0]  # repaired
        monkeypatch.setattr(sql_cache, "_code", lambda: "other compiler code")
        assert sql_cache.key(trial.criteria[0].node, "duckdb") != entry.stem
    finally:
        sql_cache.use(None)
        sql_cache.shipped_dir = shipped


def test_a_cached_duckdb_rerun_does_not_build_sql(export, tmp_path):
    """A what-if re-run on DuckDB reads every query from the cache: sqlglot is not even imported."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MSFEAS_CACHE": str(tmp_path / "cache")}
    # A changed parameter: the bundled trials' own queries ship compiled (sql/compiled/), these do not.
    args = ["run", "--input", str(export), "--out", str(tmp_path / "r"), "--as-of", "2026-11-01", "--force",
            "--engine", "duckdb", "--set", "edss_range.max_edss=5.5"]
    probe = ("import sys; sys.argv = ['msfeas', *sys.argv[1:]]\n"
             "from pipeline.cli import main\ncode = main()\n"
             "print('sqlglot' in sys.modules)\nsys.exit(code)")
    for extra, imported in (([], "True"), (["--trial", "nct04203017"], "False")):
        done = subprocess.run([sys.executable, "-c", probe, *args, *extra], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == imported
