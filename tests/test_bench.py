"""A smoke version of `make bench`: tiny export, one repeat, the results file has every figure."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_bench_smoke(tmp_path):
    out = tmp_path / "results.md"
    subprocess.run([sys.executable, str(ROOT / "bench" / "run_bench.py"), "--sizes", "300", "--repeat", "1",
                    "--out", str(out), "--notes", str(tmp_path / "none.md"), "--history", "2"], cwd=ROOT, check=True, timeout=600)
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 300 |") and "x (" not in line]  # not --history's
    assert len(rows) == 2 and "| polars |" in rows[0] and "| duckdb |" in rows[1]
    cells = rows[0].strip("|").split("|")
    assert float(cells[4]) > 0 and float(cells[5]) > float(cells[4])  # floor and run, in seconds
    assert "x |" in rows[0] and "Not measured at 1,000,000" in text
    # --history: each engine's history run against its own single-date runs, the ratios from those
    history = [line for line in text.splitlines() if line.startswith("| 300 | ") and "x (" in line]
    assert [line.split("|")[2].strip() for line in history] == ["polars", "duckdb"]
    for line in history:
        cells = [c.strip() for c in line.strip("|").split("|")]
        single, hist = float(cells[2]), float(cells[3])
        assert single > 0 and hist > 0 and cells[4].startswith(f"{hist / single:.1f}x")
        assert cells[7].startswith(f"{float(cells[6]) / float(cells[5]):.1f}x") and "-" in cells[9]
