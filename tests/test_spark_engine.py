"""The Spark evaluation engine: the same answers as DuckDB and Polars, and the dialect traps of issue 14.

Tables come from the Polars ingest, moved to Spark with `to_spark` (what the Spark ingest hands
the engine). One shared local session (tests/conftest.py `spark`), in one xdist group.

Each trap of issue 14 that concerns evaluation has a test that fails if it returned:
1. date minus date (an INTERVAL in Spark), 2. decimal literals, 3. generators in expressions,
4. division by zero under ANSI mode, 5. NULL ordering, 6. unknown functions passed through,
7. list parameters, 8. single-partition exchanges, 10. pandas kept out of the data path.
(Trap 9, the CSV reader, is the Spark ingest's.)
"""

from __future__ import annotations

import re
from functools import cache

import pytest
import sqlglot
from sqlglot import exp

from pipeline.core.dialect import load_dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria import load_trial, to_sql
from pipeline.criteria.load import bundled_trials
from pipeline.criteria.to_sql import col, criterion_query, for_dialect, render
from pipeline.engines import evaluate, spark_engine
from pipeline.inputs.ingest import ingest
from tests.conftest import ROOT, TODAY, spark_registry

pytestmark = pytest.mark.xdist_group("spark")

BLOCKS = sorted((ROOT / "sql" / "blocks").glob("*.sql"))


@cache
def sample(name: str):
    folder = ROOT / "data_samples" / name
    return ingest(folder, load_dialect(folder, {}), load_vocabulary(), today=TODAY, max_reject=1.0)


@cache
def spark_sample(name: str):
    return spark_registry(sample(name))


def all_criteria():
    return [(t, c) for t in bundled_trials() for c in load_trial(t, []).criteria]


def spark_texts() -> list[str]:
    return [render(criterion_query(c.node), "spark", pretty=False) for _, c in all_criteria()]


def duckdb_rows(sql: str) -> list[tuple]:
    import duckdb

    return duckdb.sql(sql).fetchall()


# ---------------------------------------------------------------- the samples, three engines

def test_the_regional_sample_holds_the_default_samples_data():
    """The two samples are one registry in two dialects (`make samples`: one seed): once validated,
    their tables are equal, so judging the regional one's tables again would prove nothing new. (Its
    Spark ingest and whole run: tests/test_spark_run.py.)"""
    a, b = sample("default"), sample("regional")
    assert list(a.tables) == list(b.tables)
    assert all(a.tables[t].equals(b.tables[t]) for t in a.tables)


@pytest.mark.parametrize("name", ["default"])
@pytest.mark.parametrize("trial_id", bundled_trials())
def test_samples_identical_on_three_engines(spark, trial_id, name):
    """Each bundled trial on the sample export: Spark's evaluation frame equals Polars' and DuckDB's."""
    trial = load_trial(trial_id, [])
    frames = {e: evaluate(sample(name), trial, TODAY, e) for e in ("polars", "duckdb")}
    frames["spark"] = evaluate(spark_sample(name), trial, TODAY, "spark")
    assert frames["polars"].equals(frames["duckdb"])
    assert frames["spark"].schema == frames["duckdb"].schema
    assert frames["spark"].equals(frames["duckdb"]), (frames["duckdb"], frames["spark"])


# ---------------------------------------------------------------- trap 8: no single-partition exchange

@pytest.mark.parametrize("trial_id", bundled_trials())
def test_no_single_partition_exchange(spark, trial_id):
    """No criterion's physical plan sends every row through one partition (a window without PARTITION BY)."""
    spark_engine.register(spark_sample("default").tables)
    bad = []
    for c in load_trial(trial_id, []).criteria:
        plan = spark_engine.criterion_frame(spark, c, TODAY)._jdf.queryExecution().executedPlan().toString()
        assert "Exchange" in plan or "LocalTableScan" in plan or "Scan" in plan, plan  # a real plan was read
        if "SinglePartition" in plan:
            bad.append(c.id)
    assert not bad, f"{trial_id}: single-partition exchange in {bad}"


def test_single_partition_check_sees_a_global_window(spark):
    """The check above would see the trap: a global row_number() plans a SinglePartition exchange."""
    spark_engine.register(spark_sample("default").tables)
    df = spark.sql("select patient_id, row_number() over (order by patient_id) as pk from patients")
    assert "SinglePartition" in df._jdf.queryExecution().executedPlan().toString()


def test_blocks_have_no_global_window():
    """Every window of the hand-written blocks is partitioned (by patient)."""
    for path in BLOCKS:
        for w in sqlglot.parse_one(path.read_text("utf-8"), read="duckdb").find_all(exp.Window):
            assert w.args.get("partition_by") or (w.args.get("alias") and not w.args.get("order")), \
                f"{path.name}: {w.sql('duckdb')}"


# ---------------------------------------------------------------- trap 1: date minus date

def test_trap_date_minus_date(spark):
    """Day numbers come from date_diff, an integer in both dialects (date - date is an INTERVAL in Spark)."""
    for path in BLOCKS:
        assert not re.search(r"-\s*date\s*'", path.read_text("utf-8"), re.I), f"{path.name} subtracts a date"
    q = exp.select(exp.DateDiff(this=exp.cast(exp.Literal.string("2026-11-24"), "date"),
                                expression=exp.cast(exp.Literal.string("2006-11-24"), "date"),
                                unit=exp.var("DAY")).as_("d"))
    assert duckdb_rows(render(q, "duckdb")) == [(7305,)]
    assert [tuple(r) for r in spark.sql(render(q, "spark")).collect()] == [(7305,)]
    # Every bundled criterion is analysed by Spark (a date minus date plus a number does not).
    spark_engine.register(spark_sample("default").tables)
    for _, c in all_criteria():
        spark_engine.criterion_frame(spark, c, TODAY).schema


# ---------------------------------------------------------------- trap 2: decimal literals

def test_trap_decimal_literals_are_doubles(spark):
    """No bare decimal literal reaches Spark (where it is DECIMAL, not DOUBLE): each is a CAST to DOUBLE."""
    for text in spark_texts():
        for lit in sqlglot.parse_one(text, read="spark").find_all(exp.Literal):
            assert lit.is_string or "." not in lit.this and "e" not in lit.this.lower(), text
    q = exp.select(exp.Div(this=to_sql.lit(7305.0), expression=to_sql.lit(365.25)).as_("y"))
    (spark_value,), = spark.sql(render(q, "spark")).collect()
    assert spark_value == duckdb_rows(render(q, "duckdb"))[0][0] == 7305 / 365.25


# ---------------------------------------------------------------- trap 3: generators in expressions

def test_trap_no_generator_in_an_expression(spark):
    """No query puts a generator (unnest/explode) inside an expression, which Spark refuses; lists are
    literals compared with IN or ARRAY_CONTAINS."""
    generators = (exp.Unnest, exp.Explode, exp.Posexplode, exp.Inline)
    for text in spark_texts():
        tree = sqlglot.parse_one(text, read="spark")
        assert not [g for g in tree.find_all(*generators) if not isinstance(g.parent, (exp.From, exp.Join))], text
    with pytest.raises(Exception):  # what the trap looked like
        spark.sql("select upper(explode(array('a', 'b'))) as x").collect()


# ---------------------------------------------------------------- trap 4: division by zero

def test_trap_division_by_zero_gives_ieee_values(spark):
    """x / 0 is inf, -inf or NaN (NULL stays NULL) in Spark with ANSI mode on, as in DuckDB."""
    assert spark.conf.get("spark.sql.ansi.enabled") == "true"
    values = exp.Values(expressions=[exp.tuple_(to_sql.lit(x), to_sql.lit(y)) for x, y in
                                     [(1.0, 0.0), (-2.5, 0.0), (0.0, 0.0), (None, 0.0), (3.0, 2.0), (1.0, None)]],
                        alias=exp.TableAlias(this=exp.to_identifier("t"),
                                             columns=[exp.to_identifier("x"), exp.to_identifier("y")]))
    q = exp.select(exp.Div(this=col("x"), expression=col("y")).as_("r")).from_(values)
    duck = [r[0] for r in duckdb_rows(render(q, "duckdb"))]
    sp = [r[0] for r in spark.sql(render(q, "spark")).collect()]
    assert repr(sp) == repr(duck) == repr([float("inf"), float("-inf"), float("nan"), None, 1.5, None])
    with pytest.raises(Exception, match="DIVIDE_BY_ZERO"):  # the trap: the same query not rewritten
        spark.sql(q.sql(dialect="spark")).collect()


# ---------------------------------------------------------------- trap 5: NULL ordering

def test_trap_null_ordering_is_explicit():
    """Every ORDER BY of the hand-written blocks names its NULLS place: read with DuckDB's defaults or
    Spark's, each block means the same."""
    def orderings(text: str, dialect: str) -> list:
        return [(o.this.sql(), bool(o.args.get("desc")), bool(o.args.get("nulls_first")))
                for o in sqlglot.parse_one(text, read=dialect).find_all(exp.Ordered)]

    for path in BLOCKS:
        text = path.read_text("utf-8")
        assert orderings(text, "duckdb") == orderings(text, "spark"), path.name


def test_trap_null_ordering_on_spark(spark):
    """The ordering sqlglot renders puts NULLs where DuckDB does (ascending: last)."""
    q = sqlglot.parse_one("select x from (values (2), (null), (1)) as t(x) order by x", read="duckdb")
    assert [r[0] for r in duckdb_rows(q.sql("duckdb"))] == [1, 2, None]
    assert [r[0] for r in spark.sql(q.sql("spark")).collect()] == [1, 2, None]


# ---------------------------------------------------------------- trap 6: unknown functions

def test_trap_no_unknown_function_reaches_spark():
    """sqlglot passes a function it does not know through unchanged, to fail only when Spark runs it: every
    function of every rendered query is one sqlglot knows in Spark's dialect."""
    for text in spark_texts():
        unknown = {f.name for f in sqlglot.parse_one(text, read="spark").find_all(exp.Anonymous)}
        assert not unknown, unknown


def test_trap_versions_pinned():
    """sqlglot is pinned exactly (>= 29: a parameter in a window frame; list_contains translated) and
    pyspark >= 4.1 (list parameters, a parameter in a window frame bound)."""
    lock = (ROOT / "requirements.lock").read_text("utf-8")
    sqlglot_pin = re.search(r"^sqlglot==(\d+)\.", lock, re.M)
    pyspark_pin = re.search(r"^pyspark==(\d+)\.(\d+)", lock, re.M)
    assert sqlglot_pin and int(sqlglot_pin.group(1)) >= 29
    assert pyspark_pin and (int(pyspark_pin.group(1)), int(pyspark_pin.group(2))) >= (4, 1)
    assert re.search(r'"sqlglot==[\d.]+"', (ROOT / "pyproject.toml").read_text("utf-8"))


# ---------------------------------------------------------------- trap 7: list parameters

def test_trap_list_values(spark):
    """A list (the progression block's $lines, a where's `in`) reaches Spark as a typed array literal; a
    list bound as a named parameter works too (Spark >= 4.0)."""
    e = sqlglot.parse_one("select coalesce(list_contains($lines, 2), false) as hit", read="duckdb")
    e = e.transform(lambda n: to_sql.lit([1, 2]) if isinstance(n, exp.Placeholder) else n)
    assert spark.sql(render(e, "spark")).collect()[0][0] is True
    assert duckdb_rows(render(e, "duckdb")) == [(True,)]
    assert spark.sql("select array_contains(:p, 2) as hit", args={"p": [1, 2]}).collect()[0][0] is True


# ---------------------------------------------------------------- the reference date is bound, not pasted

def test_reference_date_is_a_named_parameter(spark):
    for text in spark_texts():
        assert "2026-11-24" not in text
    sql, dated = spark_engine.criterion_sql(load_trial("nct04203017", []).criteria[1])
    assert dated and ":as_of" in sql


# ---------------------------------------------------------------- trap 10: no pandas

def test_trap_results_through_arrow_not_pandas(spark, monkeypatch):
    """The engine brings results to the driver through toArrow(); toPandas is never called."""
    from pyspark.sql import DataFrame

    def refuse(*a, **k):
        raise AssertionError("toPandas called: results must come through toArrow")

    monkeypatch.setattr(DataFrame, "toPandas", refuse)
    monkeypatch.setattr(DataFrame, "collect", refuse)
    trial = load_trial("nct04047628", [])
    ev = evaluate(spark_sample("default"), trial, TODAY, "spark")
    assert ev.height == sample("default").tables["patients"].height


def test_duckdb_sql_is_not_rewritten():
    """The per-dialect rewrite leaves DuckDB's SQL as it was (its outputs stay byte-identical)."""
    for _, c in all_criteria():
        q = criterion_query(c.node)
        assert for_dialect(q, "duckdb").sql("duckdb") == q.sql("duckdb")
