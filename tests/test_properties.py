"""Properties on random exports: the engines agree; garbage never loses a row or shows a traceback."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.criteria import load_trial
from pipeline.engines import evaluate
from pipeline.outputs.tables import attrition, candidates
from pipeline.synth import generate
from pipeline.synth import write_export as synth_write
from tests.conftest import evaluate_export, write_export

DATES = st.dates(dt.date(2018, 1, 1), dt.date(2025, 1, 1)).map(dt.date.isoformat)
PIDS = st.sampled_from(["A", "B", "C"])
EDSS = st.sampled_from([None, "0", "1.5", "2.0", "3.0", "4.0", "5.5", "6.0", "6.5", "7.0"])
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def exports(draw):
    patients = [{"patient_id": p, "site_id": "S", "sex": draw(st.sampled_from(["F", "M", None])),
                 "birth_date": draw(st.sampled_from([None, "1950-03-01", "2006-06-30"])),
                 "onset_date": draw(st.sampled_from([None, "2004-07-01", "2015-01-01"])),
                 "ms_course": "RRMS", "research_consent": "Y"} for p in ("A", "B", "C")]
    visits = draw(st.lists(st.fixed_dictionaries({
        "patient_id": PIDS, "visit_date": DATES, "edss": EDSS,
        "karnofsky": st.sampled_from([None, "20", "30", "90"]), "weight_kg": st.sampled_from([None, "45", "80.5"])}),
        max_size=25))
    treatments = draw(st.lists(st.fixed_dictionaries({
        "patient_id": PIDS, "drug": st.sampled_from(["Tysabri", "Avonex", "Novantrone"]), "start_date": DATES,
        "end_date": st.sampled_from([None, "2025-01-01", "2026-01-01"])}), max_size=4))
    relapses = draw(st.lists(st.fixed_dictionaries({"patient_id": PIDS, "onset_date": DATES}), max_size=4))
    labs = draw(st.lists(st.fixed_dictionaries({
        "patient_id": PIDS, "sample_date": st.sampled_from(["2024-04-01", "2024-06-01"]),
        "test": st.sampled_from(["AST", "ALT", "TBIL", "CREAT"]), "value": st.sampled_from(["1.0", "30", "90", "300"]),
        "unit": st.sampled_from(["U/L", "umol/L", "mg/dL"]), "ref_high": st.sampled_from([None, "45"])}), max_size=10))
    return {"patients": patients, "visits": visits, "treatments": treatments, "relapses": relapses, "labs": labs}


@SETTINGS
@given(exports(), st.sampled_from([dt.date(2024, 6, 30), dt.date(2022, 1, 1)]))
def test_engines_agree_on_random_exports(tmp_path_factory, data, as_of):
    folder = write_export(tmp_path_factory.mktemp("h") / "e", data)
    a = evaluate_export(folder, "polars", as_of)
    b = evaluate_export(folder, "duckdb", as_of)
    assert a.equals(b)
    trial = load_trial()
    assert attrition(a, trial).equals(attrition(b, trial))
    assert candidates(a, trial).equals(candidates(b, trial))


def test_engines_agree_on_a_synthetic_registry(tmp_path):
    from pipeline.core.dialect import Dialect
    from pipeline.core.vocabulary import load_vocabulary
    from pipeline.inputs.ingest import ingest
    synth_write(generate(3000, seed=7), tmp_path / "e", with_bad_rows=True)
    reg = ingest(tmp_path / "e", Dialect(), load_vocabulary(), today=dt.date(2026, 11, 24))
    for as_of in (dt.date(2026, 11, 1), dt.date(2021, 3, 15)):
        assert evaluate(reg, load_trial(), as_of, "polars").equals(evaluate(reg, load_trial(), as_of, "duckdb"))


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from(["patients.csv", "visits.csv"]))
def test_garbage_never_crashes_or_loses_rows(tmp_path_factory, capsys, blob, name):
    folder = write_export(tmp_path_factory.mktemp("g") / "e", {"patients": [{"patient_id": "A", "site_id": "S"}]})
    (folder / name).write_bytes(b"patient_id,visit_date,site_id\n" + blob)
    out = folder.parent / "out"
    rc = main(["run", "--input", str(folder), "--out", str(out), "--max-reject", "100"])
    err = capsys.readouterr().err
    assert rc in (0, 1), err
    assert "Traceback" not in err and "internal error" not in err
    if rc == 0:
        import json
        for t, i in json.loads((out / "summary.json").read_text())["inputs"].items():
            assert i["rows_read"] == i["rows_accepted"] + i["rows_quarantined"] + i["duplicates_dropped"], t
    else:
        assert not out.exists()


def test_attrition_recomputed_from_the_matrix(tmp_path):
    synth_write(generate(1500, seed=3), tmp_path / "e")
    ev = evaluate_export(tmp_path / "e", "polars", dt.date(2026, 11, 1))
    trial = load_trial()
    att = attrition(ev, trial)
    rows = ev.select(trial.ids).rows()
    remaining_prev = len(rows)
    for k, cid in enumerate(trial.ids):
        remaining = sum(1 for r in rows if "fail" not in r[: k + 1])
        gain = sum(1 for r in rows if r[k] == "fail" and r.count("fail") == 1)
        row = att.row(k, named=True)
        assert (row["remaining"], row["excluded"], row["gain"]) == (remaining, remaining_prev - remaining, gain)
        assert row["n_pass"] + row["n_fail"] + row["n_unknown"] + row["n_screening"] == len(rows)
        remaining_prev = remaining
    assert att["remaining"][-1] == ev.filter(pl.col("status") != "ineligible").height


def test_set_changes_exactly_what_it_names(tmp_path):
    synth_write(generate(800, seed=5), tmp_path / "e")
    base = evaluate_export(tmp_path / "e", "duckdb", dt.date(2026, 11, 1))
    what_if = evaluate_export(tmp_path / "e", "duckdb", dt.date(2026, 11, 1), ["edss_range.max_edss=7.0"])
    changed = [c for c in load_trial().ids if not base[c].equals(what_if[c])]
    assert changed == ["edss_range"]
    flipped = base.filter(pl.col("edss_range") != what_if["edss_range"])
    assert flipped.height > 0 and flipped["edss_range__edss"].is_between(7.0, 7.0).all()
    trial = load_trial("nct04203017", ["edss_range.max_edss=7.0"])
    rec = trial.parameters_record()["edss_range"]
    assert rec["max_edss"] == {"value": 7.0, "overridden": True}
    assert rec["min_edss"]["overridden"] is False


def test_divide_is_true_division_in_every_plan():
    """Polars may rewrite x / c as x * (1 / c); 30 / 88.4 shows the last-bit difference (found by hypothesis)."""
    from pipeline.criteria.polars_helpers import divide
    df = pl.DataFrame({"v": [30.0, 1.0, 30.0] * 50, "t": ["C", "C", "X"] * 50})
    q = divide(pl.col("v"), 88.4)
    got = [
        df.select(q)["v"][0],
        df.select(pl.when(pl.col("t") == "C").then(q))["v"][0],
        df.lazy().filter(pl.col("t") == "C").select(q).collect()["v"][0],
        df.lazy().with_columns(b=pl.when(pl.col("t") == "C").then(q)).filter(pl.col("t") == "C").collect()["b"][0],
    ]
    assert 30 / 88.4 != 30 * (1 / 88.4)
    assert got == [30 / 88.4] * 4


def test_divide_by_an_expression_of_literals_is_true_division():
    """The streaming engine also folds x / when(...).then(lit) into a multiplication: 30 / 21 is
    1.4285714285714286, 30 * (1 / 21) is 1.4285714285714284 (found by hypothesis, TBIL against its
    default ULN when no row has ref_high)."""
    from pipeline.criteria.polars_helpers import divide
    df = pl.DataFrame({"v": [1.0, 30.0, 1.0], "ref": [None, None, None], "t": ["TBIL", "TBIL", "AST"]},
                      schema_overrides={"ref": pl.Float64})
    uln = pl.coalesce(pl.col("ref"), pl.when(pl.col("t") == "TBIL").then(pl.lit(21.0))
                      .when(pl.col("t") == "AST").then(pl.lit(40.0)))
    for engine in ("auto", "in-memory", "streaming"):
        assert df.lazy().select(divide(pl.col("v"), uln)).collect(engine=engine)["v"][1] == 30 / 21
