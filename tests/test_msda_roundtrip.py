"""Round trip: an export written as an MSDA Core Dataset folder gives, on polars and duckdb, every bundled
trial's statuses (and evidence) that the CSV contract gives for the facts the CDS carries.

The facts the CDS carries are the export projected here, in contract terms and independently of the
reader (docs/msda.md): no site (the one given), consent, death, Karnofsky, weight, labs, function
tests, condition codes, dates, severity or infection details; interferon beta-1b read as beta-1a,
divozilimab as `other`; planned and pregnancy stops as `other`; infection and renal conditions as
`other`. The projected export is written in the contract and read by the CSV ingest; the export
itself is written as CDS (dates ISO, day first or mixed, BOMs drawn) and read by the CDS reader.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from pipeline import synth
from pipeline.core.dialect import Dialect
from pipeline.core.vocabulary import load_vocabulary
from pipeline.engines import evaluate
from pipeline.inputs import msda, msda_write
from pipeline.inputs.ingest import ingest
from tests.conftest import ENGINES, ROOT, TODAY
from tests.test_three_trials_properties import TRIALS, exports, sql_compiled_once, trial  # noqa: F401 - fixture

SITE = "S"
VOCAB = load_vocabulary()
KEPT_STOPS = ["inefficacy", "adverse_event", "patient_choice", "other"]
KEPT_CATEGORIES = ["malignancy", "psychiatric", "cardiac", "pulmonary", "hepatic"]
NOT_CARRIED = {"patients": ["research_consent", "death_date"], "visits": ["karnofsky", "weight_kg"],
               "conditions": ["code", "onset_date", "end_date", "severity", "infection_type", "controlled",
                              "impairs_consent"]}


def frames(tables: dict[str, list[dict]]) -> dict[str, pl.DataFrame]:
    """Row dicts as text frames with the contract's columns."""
    out = {}
    for table, rows in tables.items():
        cols = [c.name for c in schemas.TABLES[table]]
        out[table] = pl.DataFrame([{c: (None if r.get(c) is None else str(r[c])) for c in cols} for r in rows],
                                  schema={c: pl.Utf8 for c in cols})
    return out


def project(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The facts of a contract export that the CDS carries, as a contract export."""
    out = {}
    for table, f in tables.items():
        if table in ("labs", "function_tests"):
            continue
        f = f.with_columns(pl.lit(None, pl.Utf8).alias(c) for c in NOT_CARRIED.get(table, []))
        if table == "patients":
            f = f.with_columns(pl.lit(SITE).alias("site_id"))
        elif table == "treatments":
            generic = VOCAB.generic(pl.col("drug"))
            reason = pl.col("stop_reason").str.to_lowercase()
            f = f.with_columns(
                pl.when(generic.is_null()).then(pl.col("drug"))
                .when(generic == "interferon_beta_1b").then(pl.lit("interferon_beta_1a"))
                .when(generic == "divozilimab").then(pl.lit("other")).otherwise(generic).alias("drug"),
                pl.when(reason.is_in(KEPT_STOPS)).then(reason).when(reason.is_not_null()).then(pl.lit("other"))
                .alias("stop_reason"))
        elif table == "conditions":
            category = pl.col("category").str.to_lowercase()
            f = f.with_columns(pl.when(category.is_in(KEPT_CATEGORIES)).then(category)
                               .when(category.is_not_null()).then(pl.lit("other")).alias("category"))
        out[table] = f
    return out


def contract_export(folder: Path, tables: dict[str, pl.DataFrame]) -> Path:
    folder.mkdir(parents=True)
    for table, f in tables.items():
        f.write_csv(folder / f"{table}.csv", null_value="")
    return folder


def evaluations(reg, as_of: dt.date, engines) -> dict:
    return {(t, e): evaluate(reg, trial(t), as_of, e) for t in TRIALS for e in engines}


def assert_same(tables: dict[str, pl.DataFrame], root: Path, as_of: dt.date, date_form: str,
                bom: frozenset[str], engines=ENGINES) -> None:
    expected = ingest(contract_export(root / "contract", project(tables)), Dialect(), VOCAB, today=TODAY,
                      max_reject=1.0)
    folder = root / "cds"
    msda_write.write(msda_write.to_cds(tables, VOCAB, date_form), folder, bom=bom)
    got = msda.read(folder, Dialect(), VOCAB, today=TODAY, max_reject=1.0, site=SITE)
    for table in ("patients", "visits", "relapses", "treatments", "mri", "conditions"):
        if table in tables:
            a, b = expected.tables[table], got.tables[table]
            assert a.equals(b), f"{table}:\n{a}\n{b}"
    assert got.absent == expected.absent
    want, have = evaluations(expected, as_of, engines), evaluations(got, as_of, engines)
    for key in want:
        assert have[key].equals(want[key]), f"{key} as of {as_of}, dates {date_form}:\n{want[key]}\n{have[key]}"


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(exports(), st.sampled_from(msda_write.DATE_FORMS),
       st.frozensets(st.sampled_from(["patient", "disease_history", "dmt", "mri", "relapses"])))
def test_round_trip_random_exports(tmp_path_factory, export, date_form, bom):
    as_of, tables = export
    assert_same(frames(tables), tmp_path_factory.mktemp("rt"), as_of, date_form, bom)


@pytest.mark.parametrize("date_form", ["mixed"])
def test_round_trip_synthetic_registry(tmp_path, date_form):
    """The synthetic registry (the samples' generator, 400 patients): every table and trial."""
    tables = {n: synth.to_strings(f, "default") for n, f in synth.generate(400, 7).items()}
    assert_same(tables, tmp_path, dt.date(2026, 6, 30), date_form, frozenset({"patient"}))


def test_sample_is_the_generators(tmp_path):
    """data_samples/msda is what `make samples` writes (python -m pipeline.synth ... --format msda)."""
    synth.main(["--patients", "2000", "--seed", "20261124", "--out", str(tmp_path), "--with-bad-rows",
                "--format", "msda"])
    sample = ROOT / "data_samples" / "msda"
    assert sorted(p.name for p in sample.iterdir()) == sorted(p.name for p in tmp_path.iterdir())
    for p in sample.iterdir():
        assert p.read_bytes() == (tmp_path / p.name).read_bytes(), p.name
