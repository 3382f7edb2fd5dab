"""A smoke version of `make bench`: tiny export, one repeat, the results file has every figure."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_bench_smoke(tmp_path):
    out = tmp_path / "results.md"
    subprocess.run([sys.executable, str(ROOT / "bench" / "run_bench.py"), "--sizes", "300", "--repeat", "1",
                    "--out", str(out), "--notes", str(tmp_path / "none.md")], cwd=ROOT, check=True, timeout=600)
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 300 |")]
    assert len(rows) == 2 and "| polars |" in rows[0] and "| duckdb |" in rows[1]
    cells = rows[0].strip("|").split("|")
    assert float(cells[4]) > 0 and float(cells[5]) > float(cells[4])  # floor and run, in seconds
    assert float(cells[7]) > 0  # the what-if re-run
    assert "x |" in rows[0] and "No size with a target was measured" in text
    assert "--history" not in text  # not asked for


def test_history_table_from_its_own_pairs():
    """--history: each engine's history run against its own single-date runs, the ratios from those
    (figures given here; the smoke test above runs the harness itself)."""
    bench = _bench_module()
    h = {"single_wall": 10.0, "single_rss": 1.0, "wall": 61.0, "rss": 1.5, "history": 50.0, "load": [0.5, 2.0]}
    results = [{"patients": 300, "rows": 1, "mb": 1.0, "floor": 1.0,
                "engines": {e: {"wall": 2.0, "rss": 1.0, "whatif": 1.0, "stages": {s: 0.1 for s in bench.STAGES}}
                            for e in bench.ENGINES},
                "history": {"months": 2, "polars": h, "duckdb": {**h, "wall": 59.0, "rss": 2.5}}}]
    text = bench.report(results, 1)
    history = [line for line in text.splitlines() if line.startswith("| 300 | ") and "x (" in line]
    assert [line.split("|")[2].strip() for line in history] == ["polars", "duckdb"]
    assert "6.1x (NOT met)" in history[0] and "1.5x (met)" in history[0]
    assert "5.9x (met)" in history[1] and "2.5x (NOT met)" in history[1] and "0.5-2.0" in history[1]


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
