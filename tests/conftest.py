"""Shared helpers: write a small export from rows, evaluate it on both engines."""

from __future__ import annotations

import atexit
import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pytest

import schemas
from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import load_trial
from pipeline.engines import evaluate
from pipeline.inputs.ingest import ingest

ROOT = Path(__file__).resolve().parent.parent
# Runs keep validated exports in a cache (pipeline.ops.export_cache): never the user's own, in tests; a
# process's own temporary cache is removed when it ends (each pytest-xdist worker makes one).
if "MSFEAS_CACHE" not in os.environ:
    os.environ["MSFEAS_CACHE"] = tempfile.mkdtemp(prefix="msfeas-cache-")
    atexit.register(shutil.rmtree, os.environ["MSFEAS_CACHE"], ignore_errors=True)
TODAY = dt.date(2026, 11, 24)
ENGINES = ["polars", "duckdb"]


def write_export(folder: Path, tables: dict[str, list[dict]], sep: str = ",") -> Path:
    """Write tables (list of row dicts; missing keys are empty) as CSVs with the contract's columns."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, rows in tables.items():
        cols = [c.name for c in schemas.TABLES[table]]
        frame = pl.DataFrame([{c: (None if r.get(c) is None else str(r[c])) for c in cols} for r in rows],
                             schema={c: pl.Utf8 for c in cols})
        frame.write_csv(folder / f"{table}.csv", separator=sep, null_value="")
    return folder


def evaluate_export(folder: Path, engine: str, as_of: dt.date, overrides=None) -> pl.DataFrame:
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    return evaluate(reg, load_trial("nct04203017", overrides or []), as_of, engine)


def status_of(evaluation: pl.DataFrame, criterion: str) -> dict[str, str]:
    return dict(evaluation.select("patient_id", criterion).iter_rows())


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


# ---- Spark: one shared local session per test process -------------------------------------
# Every Spark test carries `pytestmark = pytest.mark.xdist_group("spark")` (or the mark on the
# test); `make test` runs pytest with `--dist loadgroup`, so all of them run in one worker and
# only one JVM starts.
# Whole-stage code generation is off in tests: on the tests' tiny tables, compiling each stage's
# Java took about half the time of every query (the results do not depend on it).
SPARK_CONF = {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2",
              "spark.sql.codegen.wholeStage": "false"}


@pytest.fixture(scope="session")
def spark():
    from pipeline.engines.spark.session import get_session

    return get_session("local[2]", SPARK_CONF)


def spark_session():
    """The shared test session (the `spark` fixture's), for helpers that cannot take a fixture."""
    from pipeline.engines.spark.session import get_session

    return get_session("local[2]", SPARK_CONF)


def spark_registry(registry):
    """A Polars-ingested Registry moved to Spark (`to_spark`): what the Spark ingest hands the engine."""
    from pipeline.engines.spark.frames import to_spark
    from pipeline.engines.spark.registry import SparkRegistry

    spark = spark_session()
    return SparkRegistry(spark, {n: to_spark(spark, f) for n, f in registry.tables.items()}, registry.inputs,
                         dialect=registry.dialect)


SPARK = pytest.mark.xdist_group("spark")


def synthetic_export(tmp_path_factory, name: str, patients: int = 300, seed: int = 5) -> Path:
    """A synthetic export with the generator's messy rows (for tests that run msfeas end to end)."""
    from pipeline.synth import generate
    from pipeline.synth import write_export as synth_write

    folder = tmp_path_factory.mktemp(name) / "export"
    synth_write(generate(patients, seed=seed), folder, with_bad_rows=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium for the browser tests (the workbench, the report's layout)."""
    from playwright.sync_api import sync_playwright

    from tests.test_report import ARGS, CHROMIUM

    assert Path(CHROMIUM).exists(), "Chromium is missing: `make test` installs it (Debian package chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()
