"""The native quality checks (pipeline/quality/checks.py) against great-expectations itself.

GE defines what each expectation means; the native checks must give its verdict and its
figures (rows, unexpected count, observed mean) on every frame: each expectation type at its
boundaries (just in, just out, missing, NaN, an empty frame, `mostly` exactly met), random
frames (hypothesis), and the bundled sample's quality frames, finding by finding.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import load_trial
from pipeline.inputs.ingest import ingest
from pipeline.quality import checks as qc
from pipeline.quality import ge as ge_runner
from pipeline.quality import stage as quality
from tests.conftest import ROOT, TODAY

D = dt.date(2026, 11, 24)
SCHEMA = {"x": pl.Float64, "a": pl.Date, "b": pl.Date, "s": pl.String, "f": pl.Boolean}
NAN = float("nan")


def day(n: int | None) -> dt.date | None:
    return None if n is None else dt.date(2020, 1, 1) + dt.timedelta(days=n)


def frame(**columns) -> pl.DataFrame:
    """A frame of the test schema; columns not given are all missing."""
    n = max((len(v) for v in columns.values()), default=0)
    data = {c: columns.get(c, [None] * n) for c in SCHEMA}
    data["a"] = [day(v) for v in data["a"]]
    data["b"] = [day(v) for v in data["b"]]
    return pl.DataFrame(data, schema=SCHEMA)


def exp(kind: str, **kwargs) -> dict:
    return {"type": f"expect_{kind}", "kwargs": kwargs, "meta": {"id": kind}}


NOT_NULL = "column_values_to_not_be_null"
IS_NULL = "column_values_to_be_null"
BETWEEN = "column_values_to_be_between"
IN_SET = "column_values_to_be_in_set"
PAIR = "column_pair_values_a_to_be_greater_than_b"
MEAN = "column_mean_to_be_between"

# (name, frame, expectation, native verdict expected): the verdict is checked against GE too.
CASES = [
    ("not null: mostly met exactly", frame(x=[1.0] * 9 + [None]), exp(NOT_NULL, column="x", mostly=0.9), True),
    ("not null: just under mostly", frame(x=[1.0] * 8 + [None, None]), exp(NOT_NULL, column="x", mostly=0.9), False),
    ("not null: NaN is missing", frame(x=[1.0, NAN]), exp(NOT_NULL, column="x"), False),
    ("not null: empty frame", frame(x=[]), exp(NOT_NULL, column="x"), True),
    ("null: all missing", frame(s=[None, None]), exp(IS_NULL, column="s"), True),
    ("null: one given", frame(s=[None, "planned"]), exp(IS_NULL, column="s"), False),
    ("between: at the maximum", frame(x=[3.0, 1.0]), exp(BETWEEN, column="x", max_value=3.0), True),
    ("between: just above", frame(x=[3.5, 1.0]), exp(BETWEEN, column="x", max_value=3.0), False),
    ("between: strict maximum", frame(x=[3.0]), exp(BETWEEN, column="x", max_value=3.0, strict_max=True), False),
    ("between: below the minimum", frame(x=[-0.5, 2.0]), exp(BETWEEN, column="x", min_value=0.0, max_value=3.0), False),
    ("between: strict minimum", frame(x=[0.0]), exp(BETWEEN, column="x", min_value=0.0, strict_min=True), False),
    ("between: missing and NaN ignored", frame(x=[None, NAN, 2.0]), exp(BETWEEN, column="x", max_value=3.0), True),
    ("between: nothing to judge", frame(x=[None, None]), exp(BETWEEN, column="x", max_value=3.0), True),
    ("between: mostly", frame(x=[1.0, 9.0, 1.0, 1.0]), exp(BETWEEN, column="x", max_value=3.0, mostly=0.75), True),
    ("in set: booleans", frame(f=[True, False, None]), exp(IN_SET, column="f", value_set=[True]), False),
    ("in set: booleans, mostly", frame(f=[True, False]), exp(IN_SET, column="f", value_set=[True], mostly=0.5), True),
    ("in set: text, missing ignored", frame(s=["planned", None, "other"]),
     exp(IN_SET, column="s", value_set=["planned", "other"]), True),
    ("in set: text outside", frame(s=["planned", "Planned"]), exp(IN_SET, column="s", value_set=["planned"]), False),
    ("pair: same day with or_equal", frame(a=[5], b=[5]),
     exp(PAIR, column_A="a", column_B="b", or_equal=True, ignore_row_if="either_value_is_missing"), True),
    ("pair: same day, strict", frame(a=[5], b=[5]), exp(PAIR, column_A="a", column_B="b"), False),
    ("pair: a day before", frame(a=[4, 9], b=[5, 1]),
     exp(PAIR, column_A="a", column_B="b", or_equal=True, ignore_row_if="either_value_is_missing"), False),
    ("pair: either missing, ignored", frame(a=[None, 3], b=[5, None]),
     exp(PAIR, column_A="a", column_B="b", or_equal=True, ignore_row_if="either_value_is_missing"), True),
    ("pair: one missing, GE's default", frame(a=[None, 7], b=[5, 1]),
     exp(PAIR, column_A="a", column_B="b", or_equal=True), False),
    ("pair: both missing, GE's default", frame(a=[None, 7], b=[None, 1]),
     exp(PAIR, column_A="a", column_B="b", or_equal=True), True),
    ("pair: neither ignored", frame(a=[None, 7], b=[None, 1]),
     exp(PAIR, column_A="a", column_B="b", or_equal=True, ignore_row_if="neither"), False),
    ("mean: at the maximum", frame(x=[6.0, 8.0]), exp(MEAN, column="x", min_value=1.0, max_value=7.0), True),
    ("mean: just above", frame(x=[6.0, 8.5]), exp(MEAN, column="x", min_value=1.0, max_value=7.0), False),
    ("mean: strict minimum", frame(x=[1.0]), exp(MEAN, column="x", min_value=1.0, strict_min=True), False),
    ("mean: NaN and missing skipped", frame(x=[2.0, NAN, None]), exp(MEAN, column="x", min_value=1.0, max_value=7.0),
     True),
    ("mean: nothing to average", frame(x=[None]), exp(MEAN, column="x", min_value=1.0, max_value=7.0), False),
    ("mean: empty frame", frame(x=[]), exp(MEAN, column="x", min_value=1.0, max_value=7.0), False),
]


@pytest.fixture(scope="module")
def ge():
    return ge_runner._context()


def ge_results(ge, data: pl.DataFrame, exps: list[dict]) -> list[dict]:
    """GE's verdict and figures for each expectation, in the native result's terms."""
    gx, ctx = ge
    name = f"t{len(ctx.suites.all())}"
    exps = [{**e, "meta": {"id": str(i)}} for i, e in enumerate(exps)]  # GE may reorder its results
    result = ge_runner._validate(gx, ctx, name, exps, ge_runner._to_pandas(data), "BASIC")
    out = []
    for res in sorted(result.results, key=lambda r: int(r.expectation_config.meta["id"])):
        assert not (res.exception_info or {}).get("raised_exception"), res.exception_info
        r = res.result or {}
        out.append({"success": bool(res.success), "unexpected": r.get("unexpected_count"),
                    "observed": ge_runner._observed(r["observed_value"]) if "observed_value" in r else None})
    return out


def native(results: list[qc.Result]) -> list[dict]:
    return [{"success": r.success, "unexpected": r.unexpected, "observed": ge_runner._observed(r.observed)}
            for r in results]


@pytest.mark.parametrize("name, data, expectation, verdict", CASES, ids=[c[0] for c in CASES])
def test_boundary_cases_give_ges_verdict(ge, name, data, expectation, verdict):
    got = qc.run_polars(data, [expectation])
    assert got[0].success is verdict
    assert got[0].element_count == data.height
    assert native(got) == ge_results(ge, data, [expectation])


def test_counts_of_a_map_expectation():
    """Considered rows are GE's: all rows for (not) null, non-missing ones for a value check."""
    got = qc.run_polars(frame(x=[None, 2.0, 9.0, NAN]), [exp(BETWEEN, column="x", max_value=3.0),
                                                        exp(NOT_NULL, column="x")])
    assert [(r.considered, r.unexpected) for r in got] == [(2, 1), (4, 2)]


@pytest.mark.parametrize("expectation", [
    exp("column_values_to_be_unique", column="x"),
    exp(BETWEEN, column="x"), exp(MEAN, column="x", min_value=3.0, max_value=1.0),
    exp(PAIR, column_A="a", column_B="b", ignore_row_if="any_value_is_missing")])
def test_what_the_native_checks_cannot_compute_is_refused(expectation):
    with pytest.raises(qc.UnsupportedExpectation):
        qc.run_polars(frame(x=[1.0]), [expectation])


def _values(draw_strategy, n):
    return st.lists(draw_strategy, min_size=n, max_size=n)


@st.composite
def frames_and_suites(draw):
    n = draw(st.integers(0, 12))
    x = draw(_values(st.one_of(st.none(), st.just(NAN), st.sampled_from([0.0, 0.5, 1.0, 2.5, 3.0, 7.0])), n))
    a = draw(_values(st.one_of(st.none(), st.integers(0, 4)), n))
    b = draw(_values(st.one_of(st.none(), st.integers(0, 4)), n))
    s = draw(_values(st.one_of(st.none(), st.sampled_from(["planned", "other", "x"])), n))
    f = draw(_values(st.one_of(st.none(), st.booleans()), n))
    mostly = st.sampled_from([None, 0.5, 0.75, 0.9])
    bound = st.sampled_from([None, 0.5, 1.0, 2.5, 3.0])

    def with_mostly(**kw):
        m = draw(mostly)
        return kw if m is None else {**kw, "mostly": m}

    lo, hi = draw(bound), draw(bound)
    if lo is None and hi is None:  # GE refuses a range without ends, or upside down (as do the native checks)
        hi = 3.0
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    suite = [
        exp(NOT_NULL, **with_mostly(column=draw(st.sampled_from(["x", "a", "s"])))),
        exp(IS_NULL, **with_mostly(column=draw(st.sampled_from(["x", "s"])))),
        exp(BETWEEN, **with_mostly(column="x", min_value=lo, max_value=hi, strict_min=draw(st.booleans()),
                                   strict_max=draw(st.booleans()))),
        exp(IN_SET, **with_mostly(column="s", value_set=draw(st.sampled_from([["planned"], ["planned", "other"]])))),
        exp(IN_SET, **with_mostly(column="f", value_set=[True])),
        exp(PAIR, **with_mostly(column_A="a", column_B="b", or_equal=draw(st.booleans()),
                                ignore_row_if=draw(st.sampled_from(
                                    ["either_value_is_missing", "both_values_are_missing", "neither"])))),
        exp(MEAN, column="x", min_value=lo, max_value=hi),
    ]
    return frame(x=x, a=a, b=b, s=s, f=f), suite


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames_and_suites())
def test_random_frames_give_ges_results(ge, case):
    data, suite = case
    assert native(qc.run_polars(data, suite)) == ge_results(ge, data, suite)


def test_sample_findings_equal_ges():
    """The bundled sample (with its planted problems; the regional sample's tables are the same):
    every finding, field by field."""
    reg = ingest(ROOT / "data_samples" / "default", Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    for trial in ("nct04203017", "nct04411641"):
        got = quality.run_quality(reg, load_trial(trial), D, engine="native")
        want = quality.run_quality(reg, load_trial(trial), D, engine="ge")
        assert got["findings"] == want["findings"]
        assert got["n_findings"] > 0


def test_volume_guard_reports_the_tables_that_fell():
    drops = quality.check_volume({"patients": 80, "visits": 79, "labs": 0}, {"patients": 100, "visits": 100,
                                                                            "labs": 10, "mri": 0}, 0.20)
    assert [(d["table"], d["rows"], d["previous_rows"]) for d in drops] == [("visits", 79, 100), ("labs", 0, 10)]
    assert math.isclose(drops[0]["drop"], 0.21)


def test_a_validating_run_loads_neither_pandas_nor_ge(tmp_path):
    """pandera's polars API without its pandas layer, and the native checks without GE: a fresh
    process that validates and checks an export never imports pandas or great_expectations
    (their imports were 2.7 s of a 20,000-patient run). With --quality ge, GE is imported."""
    import subprocess
    import sys

    args = ["run", "--input", str(ROOT / "data_samples" / "default"), "--as-of", "2026-11-01", "--no-cache"]
    probe = ("import sys; sys.argv = ['msfeas', *sys.argv[1:]]\n"
             "from pipeline.cli import main\ncode = main()\n"
             "print('pandas' in sys.modules, 'great_expectations' in sys.modules)\nsys.exit(code)")
    for extra, loaded in (([], "False False"), (["--quality", "ge"], "True True")):
        out = tmp_path / f"r{len(extra)}"
        done = subprocess.run([sys.executable, "-c", probe, *args, "--out", str(out), *extra],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == loaded
    a, b = (json.loads((tmp_path / f"r{n}" / "summary.json").read_text())["quality"] for n in (0, 2))
    assert a["findings"] == b["findings"]
