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
    assert "x |" in rows[0] and "No size with a target was measured" in text
    # --history: each engine's history run against its own single-date runs, the ratios from those
    history = [line for line in text.splitlines() if line.startswith("| 300 | ") and "x (" in line]
    assert [line.split("|")[2].strip() for line in history] == ["polars", "duckdb"]
    for line in history:
        cells = [c.strip() for c in line.strip("|").split("|")]
        single, hist = float(cells[2]), float(cells[3])
        assert single > 0 and hist > 0 and cells[4].startswith(f"{hist / single:.1f}x")
        assert cells[7].startswith(f"{float(cells[6]) / float(cells[5]):.1f}x") and "-" in cells[9]


def _bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_bench", ROOT / "bench" / "run_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_targets_are_issue_17s():
    """Each size's targets judged from the figures: 20k run and what-if, 1M time, memory and scaling."""
    bench = _bench_module()

    def size(n, floor, **engines):
        return {"patients": n, "floor": floor,
                "engines": {e: {"wall": w, "rss": r, "whatif": wi} for e, (w, r, wi) in engines.items()}}

    results = [size(20_000, 0.4, polars=(0.79, 0.3, 0.59), duckdb=(0.81, 0.3, 0.61)),
               size(100_000, 1.0, polars=(5.0, 1.0, 2.0), duckdb=(6.0, 1.0, 2.0)),
               size(1_000_000, 3.0, polars=(12.0, 2.9, 4.4), duckdb=(18.3, 4.1, 4.6))]
    lines = "\n".join(bench.targets(results))
    assert "20,000 polars: run/floor 2.0x (target 2.0x: met" in lines
    assert "20,000 duckdb: run/floor 2.0x (target 2.0x: NOT met" in lines  # 2.025x
    assert "what-if/floor 1.5x (target 1.5x: met)" in lines and "what-if/floor 1.5x (target 1.5x: NOT met)" in lines
    assert "1,000,000 polars: run/floor 4.0x (target 4.0x: met; goal 2.0x); peak 2.90 GiB (target < 3: met)" in lines
    assert "1,000,000 duckdb: run/floor 6.1x (target 6.0x: NOT met" in lines and "peak 4.10 GiB (target < 4: NOT met)" in lines
    assert "10x the patients of 100,000: 2.4x the time (linear: at most 12x: met)" in lines
    assert "100,000 polars" not in lines  # no target at 100k on its own
