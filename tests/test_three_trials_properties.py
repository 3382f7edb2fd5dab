"""Properties of the three bundled trials on random small exports.

- The two engines give identical evaluations (statuses and evidence) for NCT04203017,
  NCT04047628 (BEAT-MS) and NCT04411641 (HERCULES), with and without mri.csv and with and
  without the optional treatments.stop_reason column (the CSV is written without it).
- NCT04203017 reads neither mri nor stop_reason: its evaluation of an export is identical
  with and without them (each example also writes the export with both if one was left out,
  else with neither).
- A criterion that reads mri is unknown for everyone, with empty evidence, when mri.csv is absent.

Dates are drawn around the reference date D, at the boundaries the specs name (D - 29, - 30,
- 84, - 365, - 366, - 730, - 731, - 1095, - 1096, - 1826, after D), so that the new node types
(episodes, events_during, years_since_by_value, recent_progression) meet their edges.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.criteria.load import load_trial
from pipeline.engines import duckdb_engine, evaluate
from pipeline.inputs.ingest import ingest
from tests.conftest import ENGINES, SPARK, TODAY, spark_registry, write_export

TRIALS = ["nct04203017", "nct04047628", "nct04411641"]
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
SPARK_SETTINGS = settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
AS_OF = [dt.date(2024, 6, 30), dt.date(2022, 3, 1)]
PIDS = ["A", "B", "C", "D"]
OFFSETS = [0, 1, 10, 29, 30, 31, 60, 84, 85, 100, 200, 364, 365, 366, 400, 729, 730, 731, 1094, 1095, 1096,
           1826, 1827, 3652, 3653, 7304, 7305, -1, -30]  # days before D (negative: after D)
EDSS = [None, "0.0", "2.0", "3.0", "4.0", "4.5", "5.0", "5.5", "6.0", "6.5", "7.0"]
DRUGS = ["Tysabri", "ocrelizumab", "Tecfidera", "fingolimod", "cladribine", "Avonex", "Copaxone", "ponesimod",
         "mitoxantrone", "other"]
REASONS = [None, "inefficacy", "Inefficacy", "adverse_event", "planned", "lack of effect"]
COUNTS = [None, "0", "1", "2"]
CODES = [None, "A81.2", "a812", "D46.9", "Z94.0", "B20", "Z21", "B18.1", "B17.2", "A15", "C50.9", "C44.1", "K70"]
CATEGORIES = ["malignancy", "infection", "other", "cardiac"]


@cache
def trial(name: str):
    return load_trial(name)


@pytest.fixture(scope="module", autouse=True)
def sql_compiled_once():
    """Compile each criterion's SQL once per module rather than once per evaluation.

    The SQL of a criterion depends only on its resolved node tree (the data come in through the
    registered tables, D through the `as_of` parameter), and building it with sqlglot costs more than
    running it on a small export. Keyed by the node tree's text, so it is exact.
    """
    compiled: dict[str, tuple[str, bool]] = {}
    original = duckdb_engine.criterion_sql

    def criterion_sql(criterion):
        key = repr(criterion.node)
        if key not in compiled:
            compiled[key] = original(criterion)
        return compiled[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(duckdb_engine, "criterion_sql", criterion_sql)
        yield


@st.composite
def exports(draw):
    as_of = draw(st.sampled_from(AS_OF))

    def day(allow_empty=False):
        if allow_empty and draw(st.booleans()):
            return None
        n = draw(st.one_of(st.sampled_from(OFFSETS), st.integers(-40, 1200)))
        return (as_of - dt.timedelta(days=n)).isoformat()

    def rows(make, max_size):
        return [make() for _ in range(draw(st.integers(0, max_size)))]

    pid = st.sampled_from(PIDS)
    patients = [{"patient_id": p, "site_id": "S", "sex": draw(st.sampled_from(["F", "M", None])),
                 "birth_date": draw(st.sampled_from([None, "1950-03-01", "1970-06-30", "2004-01-01"])),
                 "onset_date": day(allow_empty=True), "diagnosis_date": day(allow_empty=True),
                 "ms_course": draw(st.sampled_from(["RRMS", "SPMS", "PPMS", "UNK", None])),
                 "research_consent": draw(st.sampled_from(["Y", "N", None])),
                 "death_date": draw(st.sampled_from([None, None, None, as_of.isoformat()]))} for p in PIDS]
    visits = rows(lambda: {"patient_id": draw(pid), "visit_date": day(), "edss": draw(st.sampled_from(EDSS)),
                           "karnofsky": draw(st.sampled_from([None, "20", "80"])),
                           "weight_kg": draw(st.sampled_from([None, "60"]))}, 14)
    relapses = rows(lambda: {"patient_id": draw(pid), "onset_date": day()}, 5)
    treatments = rows(lambda: {"patient_id": draw(pid), "drug": draw(st.sampled_from(DRUGS)), "start_date": day(),
                               "end_date": day(allow_empty=True), "stop_reason": draw(st.sampled_from(REASONS))}, 4)
    mri = rows(lambda: {"patient_id": draw(pid), "scan_date": day(), "gd_lesions": draw(st.sampled_from(COUNTS)),
                        "new_t2_lesions": draw(st.sampled_from(COUNTS))}, 5)
    conditions = rows(lambda: {"patient_id": draw(pid), "code": draw(st.sampled_from(CODES)),
                               "category": draw(st.sampled_from(CATEGORIES)), "onset_date": day(allow_empty=True),
                               "end_date": day(allow_empty=True),
                               "severity": draw(st.sampled_from([None, "severe"]))}, 4)
    labs = rows(lambda: {"patient_id": draw(pid), "sample_date": day(), "test": draw(st.sampled_from(["AST", "CREAT"])),
                         "value": draw(st.sampled_from(["30", "300"])), "unit": "U/L"}, 3)
    tables = {"patients": patients, "visits": visits, "relapses": relapses, "treatments": treatments, "mri": mri,
              "conditions": conditions, "labs": labs}
    return as_of, tables


def write(folder: Path, tables: dict, with_mri: bool, with_stop_reason: bool) -> Path:
    write_export(folder, {t: r for t, r in tables.items() if t != "mri" or with_mri})
    if not with_stop_reason:
        path = folder / "treatments.csv"
        pl.read_csv(path, infer_schema=False).drop("stop_reason").write_csv(path, null_value="")
    return folder


def evaluations(folder: Path, as_of: dt.date, trials=TRIALS, engines=ENGINES) -> dict[tuple[str, str], pl.DataFrame]:
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    return {(t, e): evaluate(reg, trial(t), as_of, e) for t in trials for e in engines}


@SETTINGS
@given(exports(), st.booleans(), st.booleans(), st.sampled_from(ENGINES))
def test_three_trials_on_random_exports(tmp_path_factory, export, with_mri, with_stop_reason, engine):
    """Engine-identical evaluations of the three trials, with or without mri.csv and stop_reason; and
    NCT04203017 evaluates the same export identically with and without them."""
    as_of, tables = export
    root = tmp_path_factory.mktemp("t3")
    ev = evaluations(write(root / "drawn", tables, with_mri, with_stop_reason), as_of)
    for t in TRIALS:
        a, b = ev[(t, "polars")], ev[(t, "duckdb")]
        assert a.equals(b), f"{t} as of {as_of}, mri {with_mri}, stop_reason {with_stop_reason}:\n{a}\n{b}"
    if not with_mri:  # every criterion that reads mri is unknown for everyone, its evidence empty
        for t in TRIALS:
            for c in trial(t).criteria:
                if "mri" in c.tables:
                    got = ev[(t, "polars")]
                    assert set(got[c.id]) == {"unknown"}, (t, c.id)
                    assert all(got[f"{c.id}__{n}"].null_count() == got.height for n in c.evidence), (t, c.id)
    # The same export with both additions if one was left out, else with neither (on one engine per example:
    # the engines were just shown to agree).
    full = not (with_mri and with_stop_reason)
    other = evaluations(write(root / "other", tables, full, full), as_of, ["nct04203017"], [engine])
    assert other[("nct04203017", engine)].equals(ev[("nct04203017", engine)]), (engine, with_mri, with_stop_reason)


@SPARK
@SPARK_SETTINGS
@given(exports(), st.booleans(), st.booleans())
def test_three_trials_spark_identical(tmp_path_factory, export, with_mri, with_stop_reason):
    """Spark as the third engine: the three trials' evaluations on random exports equal DuckDB's."""
    as_of, tables = export
    folder = write(tmp_path_factory.mktemp("t3spark") / "drawn", tables, with_mri, with_stop_reason)
    reg = ingest(folder, Dialect(), load_vocabulary(), today=TODAY, max_reject=1.0)
    sreg = spark_registry(reg)
    for t in TRIALS:
        a, b = evaluate(reg, trial(t), as_of, "duckdb"), evaluate(sreg, trial(t), as_of, "spark")
        assert a.equals(b), f"{t} as of {as_of}, mri {with_mri}, stop_reason {with_stop_reason}:\n{a}\n{b}"
