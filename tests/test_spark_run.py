"""`msfeas run --engine spark`: every output file byte-identical to the Polars engine's.

The whole run is compared, file by file, on both sample exports (the default and the
regional dialect) and on a seeded random export with bad rows and `--history`; a Parquet
copy of an export gives the same results as its CSVs. What may
differ between engines is only what says which engine ran and how long it took.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.synth import generate, write_export
from tests.conftest import ROOT, SPARK_CONF

pytestmark = pytest.mark.xdist_group("spark")
AS_OF = "2026-11-01"
# Byte for byte; summary.json and run.log are compared apart (engine name, timings), report.html
# shows the engine and timings too. quality/*.json (the native checks' results: counts and means)
# are the same bytes too, the samples' tables being under SAMPLE_ROWS (the whole table is the sample).
SAME_BYTES = ("evaluation.parquet", "candidates.csv", "attrition.csv", "site_counts.csv", "summary_public.json",
              "history.csv", "history_by_site.csv", "history_new.csv", "history_lost.csv", "projection.csv",
              "projection_backtest.csv")
VARIES = ("engine", "timings_seconds")


def _spark_args() -> list[str]:
    return ["--spark-master", "local[2]", *[a for k, v in SPARK_CONF.items() for a in ("--spark-conf", f"{k}={v}")]]


def _run(export: Path, out: Path, engine: str, *extra: str) -> None:
    args = ["run", "--input", str(export), "--out", str(out), "--as-of", AS_OF, "--engine", engine, "--no-cache",
            *extra]
    if engine == "spark":
        args += _spark_args()
    assert main(args) == 0


def _summary(path: Path) -> dict:
    s = json.loads(path.read_text())
    for k in VARIES:
        s.pop(k, None)
    return s


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same results: every result file, the summary, the quarantine."""
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    compared = 0
    for name in names:
        base = Path(name).name
        if base in SAME_BYTES or name.split("/")[-2:-1] in (["quarantine"], ["quality"]):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
            compared += 1
        elif base == "summary.json":
            assert _summary(a / name) == _summary(b / name), name
            compared += 1
    assert compared >= 5, names


@pytest.fixture(scope="module")
def random_export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spark-run") / "export"
    write_export(generate(300, seed=5), folder, with_bad_rows=True)
    return folder


@pytest.mark.parametrize("sample", ["default", "regional"])
def test_samples_identical_to_polars(tmp_path, sample, monkeypatch):
    """Both samples (their dialects, bad rows of every kind): the run folders are the same, and so
    are the validated tables and the quarantine, compared whole in the run itself (the Spark
    ingest's plans for the tables with no single-partition step)."""
    from pipeline import run as run_module
    from pipeline.engines.spark.registry import SparkRegistry
    from tests.test_spark_ingest import assert_same

    ingested = {}

    def compare(hooks, registry, log):
        if not isinstance(registry, SparkRegistry):
            ingested["polars"] = registry
            return
        for t, frame in registry.tables.items():  # (the quarantine is in Polars by now, in line order)
            plan = frame._jdf.queryExecution().executedPlan().toString()
            assert "SinglePartition" not in plan, (t, plan)
        assert_same(ingested["polars"], registry, keep=True)
        ingested["spark"] = True

    monkeypatch.setattr(run_module.Hooks, "after_ingest", compare)
    export = ROOT / "data_samples" / sample
    _run(export, tmp_path / "polars", "polars")
    _run(export, tmp_path / "spark", "spark")
    assert ingested.get("spark") and sum(i.rows_quarantined for i in ingested["polars"].inputs.values()) >= 10
    assert_same_run(tmp_path / "polars", tmp_path / "spark")
    s = json.loads((tmp_path / "spark" / "summary.json").read_text())
    assert s["engine"] == "spark" and s["population"] > 0 and s["quality"]["n_findings"] > 0
    assert sum(i["rows_quarantined"] for i in s["inputs"].values() if i["present"]) > 0


def test_random_export_with_history_identical(tmp_path, random_export):
    """A random export with bad rows, the trial that reads MRI and stop reasons, and a past date.
    (The three trials side by side on three engines: tests/test_spark_engine.py, on the samples.)"""
    extra = ("--trial", "nct04047628", "--history", "1")
    _run(random_export, tmp_path / "polars", "polars", *extra)
    _run(random_export, tmp_path / "spark", "spark", *extra)
    assert_same_run(tmp_path / "polars", tmp_path / "spark")


def test_spark_flags_need_the_spark_engine(tmp_path, capsys):
    code = main(["run", "--input", str(ROOT / "data_samples" / "default"), "--out", str(tmp_path / "x"),
                 "--spark-conf", "spark.executor.memory=2g"])
    assert code == 2 and "--engine spark" in capsys.readouterr().err
    code = main(["run", "--input", str(ROOT / "data_samples" / "default"), "--out", str(tmp_path / "x"),
                 "--engine", "spark", "--spark-conf", "executor.memory"])
    assert code == 2 and "spark.<setting>=<value>" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
