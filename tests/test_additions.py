"""mri.csv and treatments.stop_reason were added to the export contract after NCT04203017: an
export with or without them gives that trial exactly the same evaluation, on both engines."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import synth
from tests.conftest import ENGINES, evaluate_export, write_export
from tests.test_properties import SETTINGS, exports


def strip_additions(folder: Path) -> Path:
    """The same export as written before the additions: no mri.csv, no stop_reason column."""
    (folder / "mri.csv").unlink(missing_ok=True)
    treatments = folder / "treatments.csv"
    if treatments.exists():
        frame = pl.read_csv(treatments, infer_schema=False)
        frame.drop("stop_reason", strict=False).write_csv(treatments, null_value="")
    return folder


def evaluations(folder: Path, as_of: dt.date) -> dict[str, pl.DataFrame]:
    return {engine: evaluate_export(folder, engine, as_of) for engine in ENGINES}


def test_synthetic_export_with_and_without_the_additions(tmp_path):
    tables = synth.generate(1200, seed=13)
    synth.write_export(tables, tmp_path / "with", with_bad_rows=True)
    synth.write_export(tables, tmp_path / "without", with_bad_rows=True)
    strip_additions(tmp_path / "without")
    assert (tmp_path / "with" / "mri.csv").exists()
    for as_of in (dt.date(2026, 11, 1), dt.date(2021, 3, 15)):
        a, b = evaluations(tmp_path / "with", as_of), evaluations(tmp_path / "without", as_of)
        for engine in ENGINES:
            assert a[engine].equals(b[engine]), (engine, as_of)
        assert a["polars"].equals(a["duckdb"])


PIDS = st.sampled_from(["A", "B", "C", "Z"])  # Z is not a patient: quarantined
REASONS = st.sampled_from([None, "inefficacy", "Adverse_Event", "planned", "pregnancy", "lack of efficacy", "x"])
COUNTS = st.sampled_from([None, "0", "1", "3", "2.0", "1.5", "1000", "-1", "n/a"])


@settings(SETTINGS, max_examples=20)  # each example judges 2 exports on both engines: the suite's time
@given(exports(), st.data(), st.sampled_from([dt.date(2024, 6, 30), dt.date(2022, 1, 1)]))
def test_random_exports_with_and_without_the_additions(tmp_path_factory, data, draw, as_of):
    for row in data["treatments"]:
        row["stop_reason"] = draw.draw(REASONS)
    data["mri"] = draw.draw(st.lists(st.fixed_dictionaries({
        "patient_id": PIDS, "scan_date": st.sampled_from(["2019-05-01", "2023-12-31", "2024-06-30", "bad"]),
        "gd_lesions": COUNTS, "new_t2_lesions": COUNTS}), max_size=8))
    root = tmp_path_factory.mktemp("a")
    with_them = write_export(root / "with", data)
    without = strip_additions(write_export(root / "without", data))
    a, b = evaluations(with_them, as_of), evaluations(without, as_of)
    assert a["polars"].equals(b["polars"]) and a["duckdb"].equals(b["duckdb"])
    assert a["polars"].equals(a["duckdb"])
