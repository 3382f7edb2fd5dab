"""The synthetic generator: the contract's additions (mri.csv, treatments.stop_reason) leave every
table and column it wrote before them byte-identical for the same seed, and look like their spec."""

from __future__ import annotations

import hashlib

import polars as pl
import pytest

from pipeline import synth
from schemas.treatments import STOP_REASONS
from tests.conftest import ROOT

# Written by the generator as it was before the additions (commit 0c63e6b):
#   python -m pipeline.synth --patients 150 --seed 42 --out tests/fixtures/synth_before_additions --with-bad-rows
BEFORE = ROOT / "tests" / "fixtures" / "synth_before_additions"
# sha256 of data_samples/ (2000 patients, seed 20261124, --with-bad-rows) before the additions.
SAMPLES_BEFORE = {
    "default": {
        "conditions": "c98b2ac9ff1ac1f7c3c2856c77bcdeddf005686c205e19c213237f3d2cc1c00c",
        "function_tests": "2b261ab56cb53c2948eb2e08b56ed6f49836ee8e66d22d9f57f4378f6c776d3e",
        "labs": "f981482cbae231702c731f426d56cbe4e593b1919fc416e96942fb6733573457",
        "patients": "7a3ecffcf669864614a97e77edfb9cc738769aa88e07add2872e067d1893db67",
        "relapses": "db34f12f61aa41bbe81e851b332aca29d243b959f39746683c3fb300837f9e90",
        "treatments": "be8e416155be8b2bcf73fe1cdda98178547b9e4107fbcec0c77f1f1a25e0bb4f",
        "visits": "37f6c65c6be63cad6031f1a25596ff57b4c758c8d0ef60a3b3883031fb530cc2",
    },
    "regional": {
        "conditions": "d1cff6f4d8923cf0ca8d441e0b52f368e614dc469b72cad396bcb77baef637b1",
        "function_tests": "33a392ecda4c38b57b13abb83fe89718b37eda1405f7dbc795282320ea5900ca",
        "labs": "c379772e5301f28fd0803abf8ff6b00351689c6dccffabef9bc22776e491ec02",
        "patients": "331785cce360660d5f20f5e1498a92320d18a42af05930d698f6f2566f713572",
        "relapses": "26d82b3d711fa9f5acee4524e36f6c7e21bf6fbfdf391333b9e92720949d0096",
        "treatments": "6935881fda3d874f60e22e29d98ca779d87607259d58c2e2d35ff7cba3b00cbe",
        "visits": "ea84211a88eedc68b7df851c9d2f7fc036c4f318fed771fcfee8f3683c310555",
    },
}


def without_additions(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    out = {name: frame for name, frame in tables.items() if name != "mri"}
    out["treatments"] = out["treatments"].drop("stop_reason")
    return out


def test_tables_before_the_additions_are_byte_identical(tmp_path):
    tables = synth.generate(150, 42)
    assert list(tables) == ["patients", "visits", "relapses", "treatments", "labs", "function_tests", "conditions",
                            "mri"]
    synth.write_export(without_additions(tables), tmp_path / "e", with_bad_rows=True)
    old = sorted(p.name for p in BEFORE.glob("*.csv"))
    assert sorted(p.name for p in (tmp_path / "e").glob("*.csv")) == old
    for name in old:
        assert (tmp_path / "e" / name).read_bytes() == (BEFORE / name).read_bytes(), name


def test_the_new_treatments_file_only_adds_a_column(tmp_path):
    synth.write_export(synth.generate(150, 42), tmp_path / "e", with_bad_rows=True)
    new = (tmp_path / "e" / "treatments.csv").read_text().splitlines()
    old = (BEFORE / "treatments.csv").read_text().splitlines()
    assert len(new) == len(old) and new[0] == old[0] + ",stop_reason"
    assert [line.rsplit(",", 1)[0] for line in new] == old


@pytest.mark.parametrize("dialect", ["default", "regional"])
def test_sample_size_tables_before_the_additions_are_unchanged(tmp_path, dialect):
    synth.write_export(without_additions(synth.generate(2000, 20261124)), tmp_path / "e", dialect, with_bad_rows=True)
    got = {t: hashlib.sha256((tmp_path / "e" / f"{t}.csv").read_bytes()).hexdigest() for t in SAMPLES_BEFORE[dialect]}
    assert got == SAMPLES_BEFORE[dialect]


def test_stop_reasons_look_like_their_spec():
    t = synth.generate(3000, 7)["treatments"]
    ongoing = t.filter(pl.col("end_date").is_null())
    ended = t.filter(pl.col("end_date").is_not_null())
    assert ongoing["stop_reason"].null_count() == ongoing.height
    counts = dict(ended["stop_reason"].value_counts().iter_rows())
    assert set(counts) == set(STOP_REASONS) | {None}
    assert 0.05 < counts[None] / ended.height < 0.4
    nxt = pl.col("drug").shift(-1).over("patient_id")
    escalation = ended.with_columns(nxt.alias("next")).filter(
        pl.col("drug").is_in(synth.FIRST_LINE) & pl.col("next").is_in(synth.SECOND_LINE))
    assert (escalation["stop_reason"] == "inefficacy").mean() > 0.4
    planned = ended.filter(pl.col("stop_reason") == "planned")
    assert planned["drug"].is_in(synth.PLANNED_COURSES).all()
    patients = synth.generate(3000, 7)["patients"]
    pregnant = ended.filter(pl.col("stop_reason") == "pregnancy").join(patients, on="patient_id")
    assert (pregnant["sex"] == "F").all()
    assert ((pregnant["end_date"] - pregnant["birth_date"]).dt.total_days() / 365.25).is_between(18, 45).all()


def test_mri_follow_up_looks_like_its_spec():
    tables = synth.generate(3000, 7)
    mri, patients = tables["mri"], tables["patients"]
    assert mri.columns == ["patient_id", "scan_date", "gd_lesions", "new_t2_lesions"]
    assert mri.select(pl.struct("patient_id", "scan_date").is_unique().all()).item()
    per = mri.group_by("patient_id", maintain_order=True).agg(
        pl.col("new_t2_lesions").first().alias("first_t2"), pl.len().alias("n"),
        pl.col("scan_date").diff().dt.total_days().max().alias("max_gap"))
    assert per["first_t2"].null_count() == per.height  # nothing to compare a first scan with
    assert per["max_gap"].drop_nulls().max() <= 730
    assert 0.75 < per.height / patients.height < 0.95
    lived = mri.join(patients, on="patient_id")
    assert (lived["scan_date"] > lived["birth_date"]).all()
    assert (lived["death_date"].is_null() | (lived["scan_date"] <= lived["death_date"])).all()
    assert (mri["scan_date"] <= synth.REF).all()
    counted = mri["gd_lesions"].drop_nulls()
    assert counted.is_between(0, 999).all() and 0.75 < (counted == 0).mean() < 0.95
    assert counted.filter(counted > 0).is_between(1, 5).mean() > 0.9
    both_empty = (mri["gd_lesions"].is_null() & mri["new_t2_lesions"].is_null()).mean()
    assert 0.01 < both_empty < 0.2


def test_bad_rows_add_stop_reasons_outside_the_list(tmp_path):
    synth.write_export(synth.generate(300, 3), tmp_path / "e", with_bad_rows=True)
    t = pl.read_csv(tmp_path / "e" / "treatments.csv", infer_schema=False)
    given = pl.col("stop_reason").is_not_null()
    outside = t.filter(given & ~pl.col("stop_reason").str.to_lowercase().is_in(STOP_REASONS))
    assert sorted(outside["stop_reason"]) == sorted(synth.MESSY_STOP_REASONS)
    assert outside["end_date"].null_count() == 0
    on_ongoing = t.filter(given & pl.col("end_date").is_null())
    assert sorted(on_ongoing["stop_reason"]) == sorted(synth.MESSY_ONGOING_REASONS)
    clean = tmp_path / "clean"
    synth.write_export(synth.generate(300, 3), clean)
    t = pl.read_csv(clean / "treatments.csv", infer_schema=False)
    assert t.filter(given & (pl.col("end_date").is_null() | ~pl.col("stop_reason").is_in(STOP_REASONS))).height == 0


def test_a_large_export_is_written_in_blocks(tmp_path):
    """Block by block: the first block is exactly a one-call export of its size, the next ones number
    their patients on (ids unique) with rows of their own patients only, headers written once."""
    synth.write_export(synth.generate(40, seed=9), tmp_path / "one")
    synth.write_blocks(100, seed=9, out=tmp_path / "blocks", block=40)
    for name in ("patients", "visits", "treatments", "mri"):
        one = pl.read_csv(tmp_path / "one" / f"{name}.csv", infer_schema=False)
        blocks = pl.read_csv(tmp_path / "blocks" / f"{name}.csv", infer_schema=False)
        assert blocks.head(one.height).equals(one), name
        assert blocks["patient_id"].is_in(pl.Series([f"P{i:07d}" for i in range(100)]).implode()).all(), name
    patients = pl.read_csv(tmp_path / "blocks" / "patients.csv", infer_schema=False)["patient_id"]
    assert patients.to_list() == [f"P{i:07d}" for i in range(100)]
    assert synth.block_seed(9, 0) == 9 and synth.block_seed(9, 1) != 9
