"""The move of pipeline/ into stage packages changed no output: a run gives, to the byte, what
the flat layout's last commit (a953967) gave.

The fixtures in tests/fixtures/layout_move/<sample>/ were written by that commit with

    MSFEAS_TODAY=2026-12-07 msfeas run --input data_samples/<sample> --out X --trial all \
        --as-of 2026-11-01 --history 12 --no-cache

(polars; the duckdb run gave the same bytes). They hold the files whose content no issue after
the move was meant to change: each trial's evaluation, candidates, attrition, history replay,
quarantined rows and raw quality results, and the overview's tables. (The report, the summary
with its timings, the shareable counts and the projection are checked by their own tests.)
overview.csv has gained columns since (the forecast's expected eligible and months to target):
its fixture's columns must still be there, in order, with the same values.
"""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.cli import main
from tests.conftest import ENGINES, ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "layout_move"
GAINED_COLUMNS = {"overview.csv"}  # columns added after the move; the fixture's are compared


def same(got, want) -> bool:
    if want.name in GAINED_COLUMNS:
        w = pl.read_csv(want, infer_schema=False)
        g = pl.read_csv(got, infer_schema=False)
        return g.columns[:w.width] == w.columns and g.select(w.columns).equals(w)
    return got.read_bytes() == want.read_bytes()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("sample", ["default", "regional"])
def test_a_run_gives_the_flat_layouts_bytes(sample, engine, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MSFEAS_TODAY", "2026-12-07")
    out = tmp_path / "run"
    rc = main(["run", "--input", str(ROOT / "data_samples" / sample), "--out", str(out), "--trial", "all",
               "--as-of", "2026-11-01", "--history", "12", "--no-cache", "--engine", engine])
    assert rc == 0, capsys.readouterr().err
    want = sorted(p.relative_to(FIXTURES / sample) for p in (FIXTURES / sample).rglob("*") if p.is_file())
    assert len(want) > 70  # three trials' files and the overview's
    differ = [str(f) for f in want if not same(out / f, FIXTURES / sample / f)]
    assert not differ, differ
