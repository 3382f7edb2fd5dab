"""The quality stage on the Spark engine: the same frames and the same findings as with Polars.

The tables are the Polars ingest's, moved into Spark (`to_spark`), so that only the building
of the quality frames and GE's execution engine differ between the two runs compared.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from pipeline.core.dialect import load_dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import load_trial
from pipeline.engines.spark.frames import to_polars, to_spark
from pipeline.engines.spark.registry import SparkRegistry
from pipeline.inputs.ingest import ingest
from pipeline.quality.frames import quality_frames
from pipeline.quality.spark import quality_frames as spark_quality_frames
from pipeline.quality.stage import run_quality
from tests.conftest import ROOT, TODAY, write_export

pytestmark = pytest.mark.xdist_group("spark")
D = dt.date(2026, 11, 24)


def _both(spark, folder):
    reg = ingest(folder, load_dialect(folder, {}), load_vocabulary(), today=TODAY, max_reject=1.0)
    sreg = SparkRegistry(spark, {t: to_spark(spark, f) for t, f in reg.tables.items()}, reg.inputs,
                         dialect=reg.dialect)
    return reg, sreg


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns, nulls_last=True)


@pytest.fixture(scope="module")
def sample(spark):
    return _both(spark, ROOT / "data_samples" / "default")


@pytest.mark.parametrize("trial", ["nct04203017", "nct04411641"])
def test_frames_equal_polars_on_the_sample(spark, sample, trial):
    reg, sreg = sample
    want = quality_frames(reg, load_trial(trial), D)
    got = spark_quality_frames(sreg, load_trial(trial), D)
    assert set(got) == set(want)
    for name, frame in want.items():
        g = to_polars(got[name])
        assert g.columns == frame.columns, name
        if name.endswith(".sample"):  # the whole table on both below SAMPLE_ROWS: the same rows in another order
            assert _sorted(g).equals(_sorted(frame)), name
        else:
            assert _sorted(g).equals(_sorted(frame.select(g.columns))), name


# The findings themselves (GE's Spark engine against its pandas engine, counts and all) are
# compared in summary.json by tests/test_spark_run.py::test_samples_identical_to_polars, on both
# samples, which have planted problems.


def test_visit_spreads_boundaries(spark, tmp_path):
    """30 days apart is inside the window, 31 outside; same-day visits are each other's neighbours."""
    rows = [{"patient_id": "P1", "site_id": "S1", "sex": "F", "birth_date": "1980-01-01", "onset_date": "2000-01-01",
             "diagnosis_date": "2000-02-01", "ms_course": "RRMS"},
            {"patient_id": "P2", "site_id": "S1", "sex": "M", "birth_date": "1980-01-01", "onset_date": "2000-01-01",
             "diagnosis_date": "2000-02-01", "ms_course": "RRMS", "death_date": "2020-01-01"}]
    visits = [{"patient_id": "P1", "visit_date": d, "edss": e, "weight_kg": w} for d, e, w in [
        ("2020-01-01", "2.0", "60"), ("2020-01-31", "6.0", "80"),   # 30 days: a spread of 4 and 33.3 %
        ("2021-01-01", "1.0", "70"), ("2021-02-01", "5.0", "70"),   # 31 days: none
        ("2022-05-05", "3.0", None), ("2022-05-05", "4.5", "75")]] + [  # the same day: 1.5
        {"patient_id": "P2", "visit_date": "2020-03-01", "edss": "3.0"}]  # after death
    folder = write_export(tmp_path / "x", {"patients": rows, "visits": visits})
    reg, sreg = _both(spark, folder)
    trial = load_trial()
    want = quality_frames(reg, trial, D)["visits"]
    got = to_polars(spark_quality_frames(sreg, trial, D)["visits"])
    assert _sorted(got).equals(_sorted(want))
    jumps = dict(got.filter(pl.col("edss_jump_30d").is_not_null())
                 .select(pl.col("visit_date").cast(pl.Utf8), "edss_jump_30d").iter_rows())
    assert jumps == {"2020-01-31": 4.0, "2022-05-05": 1.5}
    assert got.filter(pl.col("death_date").is_not_null()).height == 1


def test_native_checks_on_spark_equal_polars(spark):
    """Each expectation type at its boundaries (tests/test_quality_checks.py's cases, held to GE
    there): the Spark SQL aggregates give the Polars ones' results."""
    from pipeline.quality import checks as qc
    from tests.test_quality_checks import CASES

    for name, data, expectation, _ in CASES:
        got = qc.run_spark(to_spark(spark, data), [expectation])
        assert got == qc.run_polars(data, [expectation]), name


@pytest.mark.parametrize("trial", ["nct04411641"])
def test_ge_on_spark_gives_the_native_findings(spark, sample, trial):
    """`--quality ge` with the Spark engine (GE's Spark execution engine) against the native checks."""
    reg, sreg = sample
    want = run_quality(reg, load_trial(trial), D, engine="native")
    got = run_quality(sreg, load_trial(trial), D, engine="ge")
    assert got["findings"] == want["findings"]
    assert got["n_findings"] > 0
